#include "core/auth_limiter.hpp"

#include <algorithm>

namespace mqttws {

bool auth_limiter::address_allowed(const std::string& address, std::int64_t now_ms) {
    std::lock_guard<std::mutex> lock(mutex_);
    const auto it = addresses_.find(address);
    return it == addresses_.end() || it->second.available(now_ms);
}

bool auth_limiter::user_allowed(const std::string& user, const std::string& address,
                                std::int64_t now_ms) {
    std::lock_guard<std::mutex> lock(mutex_);
    const auto it = users_.find(user);
    if (it == users_.end() || it->second.available(now_ms)) return true;
    const auto known = known_.find(user);
    return known != known_.end() &&
           std::find(known->second.begin(), known->second.end(), address) != known->second.end();
}

void auth_limiter::failed(const std::string& address, const std::string& user,
                          std::int64_t now_ms) {
    std::lock_guard<std::mutex> lock(mutex_);
    addresses_.try_emplace(address, make_bucket(limits_.per_address_per_minute, now_ms))
        .first->second.spend(now_ms);
    if (!user.empty()) {
        users_.try_emplace(user, make_bucket(limits_.per_user_per_minute, now_ms))
            .first->second.spend(now_ms);
    }
}

void auth_limiter::succeeded(const std::string& user, const std::string& address) {
    if (user.empty()) return;
    std::lock_guard<std::mutex> lock(mutex_);
    if (known_.size() >= max_known_users && known_.count(user) == 0) known_.clear();
    std::vector<std::string>& recent = known_[user];
    const auto it = std::find(recent.begin(), recent.end(), address);
    if (it != recent.end()) recent.erase(it);
    recent.insert(recent.begin(), address);
    if (recent.size() > known_addresses_per_user) recent.resize(known_addresses_per_user);
}

void auth_limiter::forget_idle(std::int64_t now_ms) {
    std::lock_guard<std::mutex> lock(mutex_);
    for (auto* map : {&addresses_, &users_}) {
        for (auto it = map->begin(); it != map->end();) {
            it = it->second.full(now_ms) ? map->erase(it) : std::next(it);
        }
    }
}

}  // namespace mqttws
