// Which connections of one listener are not to be read, for which reasons, and whether
// websocketpp has been told yet: the bookkeeping behind ws_server's pause_reading_from /
// resume_reading_from, kept apart from websocketpp so that it can be tested without a socket.
//
// Why a pause is first asked and only later applied: websocketpp's pause_reading() only posts
// the pause, so a read started meanwhile stays in flight, and resume_reading() would then start a
// second read into the same buffer. ws_server therefore sets websocketpp's flag itself, inside the
// connection's message handler, where websocketpp checks it before it starts the next read
// (`apply_now` says when). Then no read is in flight while a connection is paused, and resuming
// starts exactly one read: `lift` says whether to resume, which is only when the pause had been
// applied.
//
// Two reasons can hold at once (the engine's backpressure, the app's thread being behind); a
// connection is read again only when neither does.
//
// Thread safety: none; owned by the I/O thread that runs the listener.
#pragma once

#include <cstdint>
#include <unordered_map>
#include <vector>

#include "core/actions.hpp"

namespace mqttws {

class read_pauses {
  public:
    enum reason : std::uint8_t {
        for_engine = 1,  // the engine's backpressure on publishers (upstream congested)
        for_app = 2,     // the app's thread is behind this connection's frames (--threads N)
    };

    // Pauses `id` for `why`, from its next message on.
    void ask(connection_id id, reason why) { paused_[id].reasons |= why; }

    // Lifts the pause(s) `why` (a mask of reasons) from `id`. True when no reason is left and
    // the pause had been applied: the caller must resume reading now.
    bool lift(connection_id id, std::uint8_t why) {
        const auto it = paused_.find(id);
        if (it == paused_.end()) return false;
        it->second.reasons &= static_cast<std::uint8_t>(~why);
        if (it->second.reasons != 0) return false;
        const bool applied = it->second.applied;
        paused_.erase(it);
        return applied;
    }

    // Called in `id`'s message handler: true, once, when a pause was asked for and not yet
    // applied; the caller then tells websocketpp not to start the next read.
    bool apply_now(connection_id id) {
        if (paused_.empty()) return false;  // the common case: one check per message
        const auto it = paused_.find(id);
        if (it == paused_.end() || it->second.applied) return false;
        it->second.applied = true;
        return true;
    }

    // The connections paused for `why` (among other reasons, maybe).
    std::vector<connection_id> paused_for(reason why) const {
        std::vector<connection_id> ids;
        for (const auto& [id, pause] : paused_)
            if (pause.reasons & why) ids.push_back(id);
        return ids;
    }

    // `id` closed: whatever held it is gone with it.
    void forget(connection_id id) { paused_.erase(id); }

  private:
    struct state {
        std::uint8_t reasons = 0;
        bool applied = false;  // websocketpp was told; else it is told at the next message
    };
    std::unordered_map<connection_id, state> paused_;
};

}  // namespace mqttws
