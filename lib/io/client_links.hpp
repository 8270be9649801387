// The clients' side of the bridge as the engine's actions see it: ws_server in the bridge, a
// fake in tests (tests/test_action_runner.cpp).
// Thread safety: the app's thread only.
#pragma once

#include <string_view>

#include "core/actions.hpp"

namespace mqttws {

class client_links {
  public:
    virtual ~client_links() = default;
    // Queues head + frame as one WebSocket message (text, or binary) on the connection; `frame`
    // may be queued on many connections, shared.
    virtual void send(connection_id to, const frame_ptr& frame, bool binary,
                      std::string_view head) = 0;
    // A hint that a send() to `to` follows shortly (the action runner gives it a few sends
    // ahead): an implementation that looks the connection up may fetch its entry meanwhile.
    virtual void prefetch(connection_id to) { (void)to; }
    // Starts the closing handshake with `code`; on_close follows.
    virtual void close(connection_id who, close_code code, std::string_view reason) = 0;
    virtual void ping(connection_id who) = 0;
    // Backpressure: stops reading the connection's frames, from the end of the read that
    // brought its latest frame (at most a read buffer later), until resume_reading_from().
    virtual void pause_reading_from(connection_id who) = 0;
    virtual void resume_reading_from(connection_id who) = 0;
};

}  // namespace mqttws
