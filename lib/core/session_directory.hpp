// Every session of the engine, by its key and by the connection attached to it.
//
// A session is created with its first connection, and may outlive it (detached, waiting for a
// resume); a resume attaches it to a new connection. The directory keeps the connection index
// in step with what each session says its connection is, and the detached sessions in the order
// they are due to end, so that the engine can end the oldest when there are too many.
//
// Thread safety: none; the engine's thread.
#pragma once

#include <cstddef>
#include <memory>
#include <set>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "core/id_map.hpp"
#include "core/session.hpp"

namespace mqttws {

class session_directory {
  public:
    session& open(connection_id c, std::string remote_address, const outbox_limits& limits);
    session* by_connection(connection_id c);
    session* by_key(session_key key);

    // `s` takes connection `c` (a resume).
    void attach(session& s, connection_id c);
    // `s` loses its connection and waits for a resume until `keep_until_ms`.
    void detach(session& s, std::int64_t keep_until_ms);
    // Forgets connection `c` without touching its session (it was taken over, or is closing).
    void forget_connection(connection_id c) { by_connection_.erase(c); }
    // Destroys `s` (which must have left every other structure by now).
    void erase(session& s);

    std::size_t size() const { return sessions_.size(); }
    std::size_t connections() const { return by_connection_.size(); }
    std::size_t detached() const { return detached_.size(); }
    // The detached session due to end first (nullptr: none).
    session* oldest_detached();

    // fn(session&) for every session. `fn` must not add or erase sessions.
    template <class Fn>
    void for_each(Fn&& fn) {
        for (auto& [key, s] : sessions_)
            fn(*s);
    }
    template <class Fn>
    void for_each(Fn&& fn) const {
        for (const auto& [key, s] : sessions_)
            fn(static_cast<const session&>(*s));
    }
    // fn(session&) for every session with a connection. `fn` must not attach, detach or erase
    // sessions.
    template <class Fn>
    void for_each_connected(Fn&& fn) {
        by_connection_.for_each([&](connection_id, session* s) { fn(*s); });
    }

  private:
    struct key_hash {
        std::size_t operator()(session_key k) const noexcept {
            return std::hash<std::uint64_t>()(static_cast<std::uint64_t>(k));
        }
    };
    std::uint64_t next_key_ = 1;
    std::unordered_map<session_key, std::unique_ptr<session>, key_hash> sessions_;
    id_map<session*> by_connection_;  // looked up for every frame a client sends
    std::set<std::pair<std::int64_t, session_key>> detached_;  // (keep until, key)
};

}  // namespace mqttws
