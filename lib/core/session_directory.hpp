// Every session of the engine, by its key and by the connection attached to it.
//
// A session is created with its first connection, and may outlive it (detached, waiting for a
// resume); a resume attaches it to a new connection. The directory keeps the connection index
// in step with what each session says its connection is, and the bridge's detached_sessions in
// step with which of its sessions wait, so that the oldest in the bridge ends when there are too
// many.
//
// Thread safety: none; the engine's thread.
#pragma once

#include <cstddef>
#include <memory>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "core/detached_sessions.hpp"
#include "core/id_map.hpp"
#include "core/session.hpp"

namespace mqttws {

class session_directory {
  public:
    // `waiting`: the bridge's detached sessions (shared by engine shards); `shard`: this engine's.
    session_directory(std::shared_ptr<detached_sessions> waiting, std::size_t shard)
        : waiting_(std::move(waiting)), shard_(shard) {}

    session& open(connection_id c, std::string remote_address, const outbox_limits& limits);
    session* by_connection(connection_id c);
    session* by_key(session_key key);

    // `s` takes connection `c` (a resume).
    void attach(session& s, connection_id c);
    // `s` loses its connection and waits for a resume until `keep_until_ms`. Returns the
    // sessions that must end now, the bridge's limit being passed: `s` itself, others of this
    // engine, or of other shards (detached_sessions::detached).
    std::vector<detached_sessions::entry> detach(session& s, std::int64_t keep_until_ms);
    // Forgets connection `c` without touching its session (it was taken over, or is closing).
    void forget_connection(connection_id c) { by_connection_.erase(c); }
    // Destroys `s` (which must have left every other structure by now).
    void erase(session& s);

    std::size_t size() const { return sessions_.size(); }
    std::size_t connections() const { return by_connection_.size(); }

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
    // `s` no longer waits (resumed or ended).
    void stop_waiting(const session& s);

    std::shared_ptr<detached_sessions> waiting_;
    const std::size_t shard_;
    std::uint64_t next_key_ = 1;
    std::unordered_map<session_key, std::unique_ptr<session>, key_hash> sessions_;
    id_map<session*> by_connection_;  // looked up for every frame a client sends
};

}  // namespace mqttws
