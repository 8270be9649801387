// Failed authentications, limited per remote address and per user, so that a password cannot be
// guessed quickly from one address, nor from many addresses at one user.
//
// - Per address (by IP, whatever the port): `per_address_per_minute` failures, refilled over a
//   minute; beyond them the address may not try at all (4429) until its allowance refills.
// - Per user: `per_user_per_minute` failed password checks, refilled over a minute; beyond
//   them, the user's password is not checked at all — whoever tries — until the allowance
//   refills. An attacker rotating over many addresses thus gets a few guesses a minute, not
//   thousands a second. The lock is bounded: it ends at most a minute after the attack stops.
//   An address that authenticated successfully as the user before (the last few are kept) is
//   not held back by the user's lock, so an attack does not lock the user out of where they
//   usually connect from.
//
// Memory: an entry per address or user with recent failures (forget_idle() drops the rest) and
// the last addresses of users who authenticated (bounded in all).
//
// Thread safety: any thread. Engine shards share one (engine_shards.hpp), so that the limits hold
// for the bridge as a whole; each call takes its lock (authentication is not on the hot path).
// Two shards may both find an address allowed and then both fail it: the allowance is exceeded
// by at most the number of shards, once.
#pragma once

#include <cstddef>
#include <cstdint>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "core/token_bucket.hpp"

namespace mqttws {

struct auth_limits {
    std::size_t per_address_per_minute = 10;
    std::size_t per_user_per_minute = 10;
};

class auth_limiter {
  public:
    explicit auth_limiter(auth_limits limits = {}) : limits_(limits) {}

    // May `address` (an IP without port) attempt to authenticate?
    bool address_allowed(const std::string& address, std::int64_t now_ms);
    // May the password of `user` be checked now for a client at `address`?
    bool user_allowed(const std::string& user, const std::string& address, std::int64_t now_ms);
    // A failed attempt from `address`; `user` is the user whose password was wrong (empty when
    // the failure was not a password check, e.g. a bad JWT).
    void failed(const std::string& address, const std::string& user, std::int64_t now_ms);
    // `user` authenticated from `address`.
    void succeeded(const std::string& user, const std::string& address);
    // Drops addresses and users whose allowance is full again.
    void forget_idle(std::int64_t now_ms);

    std::size_t tracked() const {
        std::lock_guard<std::mutex> lock(mutex_);
        return addresses_.size() + users_.size();
    }

  private:
    token_bucket make_bucket(std::size_t per_minute, std::int64_t now_ms) const {
        const double n = static_cast<double>(per_minute);
        return token_bucket(n / 60.0, n, now_ms);
    }

    static constexpr std::size_t known_addresses_per_user = 4;
    static constexpr std::size_t max_known_users = 100000;

    const auth_limits limits_;
    mutable std::mutex mutex_;  // over the three maps
    std::unordered_map<std::string, token_bucket> addresses_;
    std::unordered_map<std::string, token_bucket> users_;
    std::unordered_map<std::string, std::vector<std::string>> known_;  // user → recent addresses
};

}  // namespace mqttws
