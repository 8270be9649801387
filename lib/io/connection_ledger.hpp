// What every listener shares about connections, whichever I/O thread accepted them: the
// admission limits (core/admission.hpp), the WebSockets open or upgrading (for
// --max-connections), and the counters /metrics shows. With --threads N, N listeners share one
// ledger, so that each limit holds for the bridge as a whole, not per thread.
//
// Thread safety: any thread; `with` holds the ledger's lock while `f` runs (accepts, upgrades
// and closes take it, frames never do).
#pragma once

#include <cstddef>
#include <cstdint>
#include <mutex>

#include "core/admission.hpp"

namespace mqttws {

struct connection_counters {
    std::uint64_t accepted = 0;  // WebSocket connections opened
    std::uint64_t refused = 0;   // upgrades refused (origin, max connections, version, limits)
    std::uint64_t sockets_refused = 0;  // sockets closed at once (admission limits)
    std::uint64_t accept_failures = 0;  // accept() failures, e.g. out of file descriptors
    std::size_t pending = 0;            // sockets not upgraded yet
    std::size_t buffered_bytes = 0;     // queued on all connections, not yet written
};

class connection_ledger {
  public:
    struct state {
        admission gate;
        std::size_t open = 0;       // WebSockets open
        std::size_t upgrading = 0;  // upgrades accepted, their connection not open yet
        connection_counters counters;
    };

    explicit connection_ledger(admission_limits limits) : state_{admission(limits), 0, 0, {}} {}

    template <class F>
    auto with(F&& f) {
        std::lock_guard<std::mutex> lock(mutex_);
        return f(state_);
    }

    // The counters, with `pending` filled in (`buffered_bytes` is the listeners' to add).
    connection_counters totals() {
        return with([](state& s) {
            connection_counters c = s.counters;
            c.pending = s.gate.pending();
            return c;
        });
    }
    std::size_t open() {
        return with([](state& s) { return s.open; });
    }

  private:
    std::mutex mutex_;
    state state_;
};

}  // namespace mqttws
