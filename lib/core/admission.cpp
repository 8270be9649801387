#include "core/admission.hpp"

#include <arpa/inet.h>

#include <algorithm>
#include <array>
#include <cstring>

namespace mqttws {

std::string address_group(std::string_view address, unsigned ipv6_prefix) {
    const std::string text(address);
    std::array<unsigned char, 16> bytes{};
    if (text.find(':') == std::string::npos ||
        inet_pton(AF_INET6, text.c_str(), bytes.data()) != 1) {
        return text;  // IPv4, or not an address at all: itself
    }
    const unsigned prefix = std::min(ipv6_prefix, 128u);
    for (unsigned bit = prefix; bit < 128; ++bit)
        bytes[bit / 8] = static_cast<unsigned char>(bytes[bit / 8] & ~(0x80u >> (bit % 8)));
    std::array<char, INET6_ADDRSTRLEN> out{};
    inet_ntop(AF_INET6, bytes.data(), out.data(), out.size());
    return std::string(out.data()) + "/" + std::to_string(prefix);
}

admission::verdict admission::accept(const std::string& group) {
    if (limits_.max_pending != 0 && pending_ >= limits_.max_pending)
        return verdict::too_many_pending;
    if (!group.empty() && limits_.max_per_address != 0) {
        const auto it = groups_.find(group);
        if (it != groups_.end() && it->second.sockets >= limits_.max_per_address)
            return verdict::too_many_from_address;
    }
    ++pending_;
    if (!group.empty()) ++groups_[group].sockets;
    return verdict::admit;
}

admission::verdict admission::handshake(const std::string& group, bool count_group,
                                        std::int64_t now_ms) {
    if (count_group && limits_.max_per_address != 0) {
        const auto it = groups_.find(group);
        if (it != groups_.end() && it->second.sockets >= limits_.max_per_address)
            return verdict::too_many_from_address;
    }
    if (limits_.handshakes_per_second > 0) {
        group_state& g = groups_[group];
        if (!g.has_bucket) {
            const double burst = limits_.handshake_burst > 0
                                     ? limits_.handshake_burst
                                     : std::max(1.0, 2 * limits_.handshakes_per_second);
            g.handshakes = token_bucket(limits_.handshakes_per_second, burst, now_ms);
            g.has_bucket = true;
        }
        if (!g.handshakes.take(now_ms)) return verdict::too_fast;
    }
    if (count_group) ++groups_[group].sockets;
    return verdict::admit;
}

void admission::release(const std::string& group, bool pending) {
    if (pending) opened();
    if (!group.empty()) drop_one(group);
}

void admission::release_client(const std::string& group) {
    drop_one(group);
}

void admission::drop_one(const std::string& group) {
    const auto it = groups_.find(group);
    if (it == groups_.end() || it->second.sockets == 0) return;
    if (--it->second.sockets == 0 && !it->second.has_bucket) groups_.erase(it);
}

std::size_t admission::sockets_from(const std::string& group) const {
    const auto it = groups_.find(group);
    return it == groups_.end() ? 0 : it->second.sockets;
}

void admission::forget_idle(std::int64_t now_ms) {
    for (auto it = groups_.begin(); it != groups_.end();) {
        group_state& g = it->second;
        if (g.sockets == 0 && (!g.has_bucket || g.handshakes.full(now_ms))) {
            it = groups_.erase(it);
        } else {
            ++it;
        }
    }
}

std::string_view to_string(admission::verdict v) {
    switch (v) {
        case admission::verdict::admit:
            return "admitted";
        case admission::verdict::too_many_pending:
            return "too many connections waiting for their handshake";
        case admission::verdict::too_many_from_address:
            return "too many connections from this address";
        case admission::verdict::too_fast:
            return "too many handshakes from this address";
    }
    return "?";
}

}  // namespace mqttws
