// Carries out the engine's actions: frames, pings, closes and pauses go to the clients'
// connections, subscribes and publishes to the broker, log lines to the log, audit records to the
// audit trail, state records to the state directory. The only place where an action becomes I/O, so
// that a test can run the engine against fake edges (tests/test_action_runner.cpp) and see what
// would have been written.
//
// Thread safety: the app's thread only, after the engine returned (nothing here re-enters it).
#pragma once

#include "core/actions.hpp"
#include "core/platform.hpp"
#include "io/audit_log.hpp"
#include "io/client_links.hpp"
#include "io/state_dir.hpp"
#include "io/upstream.hpp"

namespace mqttws {

class action_runner {
  public:
    action_runner(client_links& clients, upstream& broker, audit_log& audit, state_dir& state,
                  const platform& clock)
        : clients_(clients), broker_(broker), audit_(audit), state_(state), clock_(clock) {}

    // Carries out every action in order, then clears the list.
    void run(action_list& actions);

  private:
    static constexpr std::size_t prefetch_distance = 8;  // sends ahead (client_links::prefetch)

    void carry_out(send_frame& a) { clients_.send(a.to, a.frame, a.binary, a.head.view()); }
    void carry_out(ping_client& a) { clients_.ping(a.who); }
    void carry_out(close_client& a) { clients_.close(a.who, a.code, a.reason); }
    void carry_out(pause_reading& a) { clients_.pause_reading_from(a.who); }
    void carry_out(resume_reading& a) { clients_.resume_reading_from(a.who); }
    void carry_out(subscribe_upstream& a) { broker_.subscribe(a); }
    void carry_out(unsubscribe_upstream& a) { broker_.unsubscribe(a); }
    void carry_out(publish_upstream& a) { broker_.publish(std::move(a)); }
    void carry_out(log_line& a);
    void carry_out(audit_record& a) { audit_.write(a, clock_.wall_ms()); }
    void carry_out(state_record& a) { state_.write(a); }
    // Only engine shards emit these (engine_shards.hpp).
    void carry_out(device_presence&) {}
    void carry_out(end_detached_session&) {}
    void carry_out(adopt_command&) {}
    void carry_out(tell_command_owner&) {}

    client_links& clients_;
    upstream& broker_;
    audit_log& audit_;
    state_dir& state_;
    const platform& clock_;
};

}  // namespace mqttws
