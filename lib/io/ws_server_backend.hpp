// Internal to ws_server: what ws_server asks of the server underneath it (one per transport,
// plain TCP or TLS; ws_server_impl.hpp writes both with websocketpp), and the two factories.
// Kept apart from ws_server_impl.hpp so that this seam reads without the websocketpp code.
//
// Thread safety: as ws_server — the io_context's one thread only.
#pragma once

#include <asio/io_context.hpp>
#include <cstddef>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "io/ws_server.hpp"

namespace mqttws {

class ws_server::backend {
  public:
    virtual ~backend() = default;
    virtual void listen() = 0;
    virtual void stop_listening() = 0;
    virtual listen_endpoint local_endpoint() const = 0;
    virtual void send(connection_id to, const frame_ptr& frame, bool binary,
                      std::string_view head) = 0;
    virtual std::size_t buffered_bytes(connection_id who) const = 0;
    virtual void close(connection_id who, close_code code, std::string_view reason) = 0;
    virtual void ping(connection_id who) = 0;
    virtual void pong(connection_id who, std::string_view payload) = 0;
    virtual void pause_reading_from(connection_id who) = 0;
    virtual void resume_reading_from(connection_id who) = 0;
    virtual void resume_reading_all() = 0;
    virtual void pause_reading_for_app(connection_id who) = 0;
    virtual void resume_reading_for_app(connection_id who) = 0;
    virtual std::size_t connection_count() const = 0;
    virtual connection_counters totals() const = 0;
    virtual std::optional<std::string> reload_tls() = 0;
};

std::unique_ptr<ws_server::backend> make_plain_backend(asio::io_context& io,
                                                       ws_server_options options,
                                                       ws_server::handlers h,
                                                       std::shared_ptr<connection_ledger> ledger);
std::unique_ptr<ws_server::backend> make_tls_backend(asio::io_context& io,
                                                     ws_server_options options,
                                                     ws_server::handlers h,
                                                     std::shared_ptr<connection_ledger> ledger);

}  // namespace mqttws
