// Who may open a connection: the limits on sockets the bridge holds before they become WebSockets,
// on sockets per address, and on how fast one address may open WebSocket handshakes. (The limit
// on WebSockets in all, --max-connections, is the server's: it answers 503 beyond it.)
//
// The edge (ws_server) asks before it starts serving a socket it accepted, and again when the
// socket asks to upgrade (then behind a trusted proxy the client's own address is known, from
// X-Forwarded-For); it gives each socket's slot back when the socket ends. Per address, every
// socket counts, upgraded or not, so that a peer holding many half-done handshakes is limited
// like one holding many WebSockets.
//
// Addresses are grouped: an IPv4 address is its own group, an IPv6 address is grouped by its
// first `ipv6_prefix` bits (default /64, the usual allocation to one site), so that one host
// cannot escape the per-address limit by cycling through the addresses of its prefix.
//
// Memory: one entry per group that holds a socket or whose handshake bucket is not full again;
// forget_idle() drops the rest.
//
// Thread safety: none; the edge's thread.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>

#include "core/token_bucket.hpp"

namespace mqttws {

struct admission_limits {
    std::size_t max_pending = 1000;    // sockets not (yet) upgraded: handshakes, HTTP (0: none)
    std::size_t max_per_address = 0;   // sockets from one address group (0: no limit)
    unsigned ipv6_prefix = 64;         // bits of an IPv6 address that make its group
    double handshakes_per_second = 0;  // WebSocket handshakes per address group (0: no limit)
    double handshake_burst = 0;        // ...at once (0: twice the rate, at least 1)
};

// The group an address (an IP address without port, as handshake.hpp's address_without_port
// gives it) belongs to: "192.0.2.1", or "2001:db8:1:2::/64". Text that is not an IP address is
// its own group.
std::string address_group(std::string_view address, unsigned ipv6_prefix);

class admission {
  public:
    enum class verdict {
        admit,
        too_many_pending,       // max_pending
        too_many_from_address,  // max_per_address
        too_fast,               // handshakes_per_second
    };

    explicit admission(admission_limits limits = {}) : limits_(limits) {}
    const admission_limits& limits() const { return limits_; }

    // A socket accepted from `group` (empty: a trusted proxy, not limited per address). On admit
    // it is pending, and holds a slot of its group until release().
    verdict accept(const std::string& group);
    // The socket asks to upgrade; `group` is the client's. Behind a trusted proxy (the proxy
    // names the client) `count_group` is true: on admit the socket also holds a slot of the
    // client's group until release_client(group).
    verdict handshake(const std::string& group, bool count_group, std::int64_t now_ms);
    // The pending socket became a WebSocket.
    void opened() {
        if (pending_ > 0) --pending_;
    }
    // The socket of accept() ended; `pending`: before it became a WebSocket.
    void release(const std::string& group, bool pending);
    // Gives back the slot a handshake(…, count_group = true) took.
    void release_client(const std::string& group);

    std::size_t pending() const { return pending_; }
    std::size_t sockets_from(const std::string& group) const;
    // Drops groups that hold nothing and whose handshake bucket is full again.
    void forget_idle(std::int64_t now_ms);

  private:
    struct group_state {
        std::size_t sockets = 0;
        bool has_bucket = false;
        token_bucket handshakes;
    };
    void drop_one(const std::string& group);

    admission_limits limits_;
    std::size_t pending_ = 0;
    std::unordered_map<std::string, group_state> groups_;
};

std::string_view to_string(admission::verdict v);

}  // namespace mqttws
