#include "core/session_directory.hpp"

namespace mqttws {

session& session_directory::open(connection_id c, std::string remote_address,
                                 const outbox_limits& limits) {
    const auto key = static_cast<session_key>(next_key_++);
    auto owned = std::make_unique<session>(key, std::move(remote_address), limits);
    session& s = *owned;
    s.attach(c);
    by_connection_.insert(c, &s);
    sessions_.emplace(key, std::move(owned));
    return s;
}

session* session_directory::by_connection(connection_id c) {
    session* const* found = by_connection_.find(c);
    return found ? *found : nullptr;
}

session* session_directory::by_key(session_key key) {
    const auto it = sessions_.find(key);
    return it == sessions_.end() ? nullptr : it->second.get();
}

void session_directory::attach(session& s, connection_id c) {
    if (s.connection() != 0) by_connection_.erase(s.connection());
    stop_waiting(s);
    s.attach(c);
    by_connection_.insert(c, &s);
}

std::vector<detached_sessions::entry> session_directory::detach(session& s,
                                                                std::int64_t keep_until_ms) {
    if (s.connection() != 0) by_connection_.erase(s.connection());
    stop_waiting(s);
    s.detach(keep_until_ms);
    return waiting_->detached({keep_until_ms, shard_, static_cast<std::uint64_t>(s.key())});
}

void session_directory::stop_waiting(const session& s) {
    if (s.detached_until_ms() != 0) waiting_->gone(shard_, static_cast<std::uint64_t>(s.key()));
}

void session_directory::erase(session& s) {
    if (s.connection() != 0) {
        session* const* found = by_connection_.find(s.connection());
        if (found && *found == &s) by_connection_.erase(s.connection());
    }
    stop_waiting(s);
    sessions_.erase(s.key());
}

}  // namespace mqttws
