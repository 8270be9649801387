// One client session: who the client is, what it subscribed to, what it was sent.
//
// A session starts with a WebSocket connection and normally ends with it. When the connection
// drops without a clean close, the session is kept for the resume window: its subscriptions stay
// in the registry and its deliveries keep being recorded in its outbox, so a client that comes
// back with the session token continues where it stopped (engine::resume).
// The subscription registry points at sessions, so a session leaves the registry before it is
// destroyed (engine::end_session does both).
//
// What the components of the engine keep per session is grouped by owner: `liveness` (the
// engine's heartbeat), `token_state` (auth_gate), `pacing_state` (delivery_pacer), the
// subscriptions (upstream_subscriptions), the QoS 2 publish memory (publish_relay), the outbox.
//
// Thread safety: none; owned by the engine's thread.
#pragma once

#include <algorithm>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "core/acl.hpp"
#include "core/actions.hpp"
#include "core/authenticator.hpp"
#include "core/fifo.hpp"
#include "core/message_body.hpp"
#include "core/outbox.hpp"
#include "core/requests.hpp"
#include "core/send_budget.hpp"
#include "core/subscriptions.hpp"
#include "core/token_bucket.hpp"
#include "core/topic.hpp"

namespace mqttws {

// The engine's handle for a session, never reused. A distinct type so that it cannot be mixed up
// with a connection_id (the edge's handle for a connection).
enum class session_key : std::uint64_t {};

struct upstream_state;  // upstream_subscriptions.hpp: what the bridge keeps per held filter
using upstream_filter = registered_filter<upstream_state>;

struct client_subscription {
    std::uint8_t qos = 0;
    subscription_options options;
    const upstream_filter* upstream = nullptr;  // the registry entry (lives as long as this)
    // Set while the client waits for its `suback`: the request's msgid, answered when the
    // upstream operation `waiting_op` is confirmed by the broker (0: not yet sent upstream).
    std::optional<msg_id> pending_suback;
    op_id waiting_op = 0;
};

// What the session remembers of a QoS 2 publish, so that a resend (same msgid, `dup`) is not
// published twice: whether the broker has answered, and then the answer to give again.
struct publish_memory {
    bool pending = true;           // the broker has not answered yet
    std::uint32_t extra_acks = 0;  // resends received while pending: each gets an ack too
    std::optional<errc> error;     // the result, once known
    std::string message;
};

// A QoS 0 message held back for a client, the newest per topic: while the client is over its
// outgoing budget (conflation) or until its topic's maxRate allows the next one.
struct held_message {
    std::shared_ptr<const message_body> body;
    subscription_options options;
    std::int64_t due_ms = 0;  // maxRate: not before this; 0: as soon as the client drains
};

struct session_counters {
    std::uint64_t frames_in = 0;
    std::uint64_t frames_out = 0;
    std::uint64_t messages_delivered = 0;
    std::uint64_t publishes = 0;
    std::uint64_t errors = 0;
    std::uint64_t conflated = 0;  // QoS 0 messages replaced by a newer one before being sent
    std::uint64_t dropped = 0;    // QoS 0 messages not sent (over budget without conflation)
};

// Is the attached connection alive, and is it being closed? (the engine's heartbeat)
struct liveness {
    // Before authentication: when the connection is closed for not authenticating (0: never).
    std::int64_t auth_deadline_ms = 0;
    // When the client last showed it is alive, and when it was last pinged.
    std::int64_t last_alive_ms = 0;
    std::int64_t last_ping_ms = 0;
    // The client asked for `ping` frames (`"heartbeat":true`): it is sent one whenever nothing
    // else went to it for the ping interval (`last_sent_ms`: when something last did).
    bool app_pings = false;
    std::int64_t last_sent_ms = 0;
    // The engine has asked for this connection to be closed (timeout, slow consumer): nothing
    // more is sent, and it is not closed (nor counted) again while the close handshake runs.
    bool closing = false;
    // Its frames are not read for now (publish_relay: backpressure), so its silence proves
    // nothing: no heartbeat timeout meanwhile.
    bool reading_paused = false;
};

// The token the client authenticated with (auth_gate): when it expires (wall-clock ms; 0:
// never), its id (`jti`), and whether the client was told it is about to expire.
struct token_state {
    std::int64_t expires_ms = 0;
    std::optional<std::string> id;
    bool expiry_told = false;
};

// What the delivery_pacer holds for the client besides the outbox: what its connection holds
// on the way out (send_budget), the QoS 0 messages held back (conflation, maxRate), and a
// `batch` frame being gathered.
struct pacing_state {
    send_budget budget;  // one per connection: reset when a connection attaches or detaches
    std::size_t replay_allowance = 0;  // a resume's replay, allowed beyond twice the budget
    std::map<std::string, held_message, std::less<>> held;  // by topic
    std::size_t held_bytes = 0;                             // their bodies' size
    // maxRate: when the next QoS 0 message of each recently sent topic may go. Entries past
    // their time are swept (delivery_pacer::remember_rate), so this holds the topics of the
    // last interval only, and never more than delivery_pacer::max_rate_topics.
    std::unordered_map<std::string, std::int64_t> next_send_by_topic;
    std::int64_t rate_swept_ms = 0;
    std::vector<std::string> batch;  // finished `message` frames waiting to go out together
    std::size_t batch_bytes = 0;
    std::uint16_t batch_max = 0;
    std::int64_t batch_due_ms = 0;
};

// What the bridge keeps for a client as a device and for its last will (presence.hpp,
// commands.hpp).
struct device_state {
    bool takes_commands = false;    // `commands:true` in auth: `command` frames, not `control`
    std::optional<last_will> will;  // published if the session ends other than cleanly
    std::int64_t will_due_ms = 0;   // after a drop: when the will goes out (0: not scheduled)
    // Commands this device was given and has not answered, by id: where the answer goes.
    struct open_command {
        std::string response_topic;
        std::string correlation;
    };
    std::unordered_map<std::string, open_command> open_commands;
    fifo<std::string> open_order;  // oldest first, to bound open_commands
};

class session {
  public:
    using subscription_map = std::map<std::string, client_subscription, std::less<>>;
    using subscription_ref = const subscription_map::value_type*;

    session(session_key key, std::string remote_address, outbox_limits limits = {})
        : outbox_(limits), key_(key), remote_address_(std::move(remote_address)) {}

    session_key key() const { return key_; }
    const std::string& remote_address() const { return remote_address_; }

    bool authenticated() const { return authenticated_; }
    const std::string& client_id() const { return client_id_; }
    bool is_device() const { return is_device_; }
    // The topic a device receives `control` frames on (empty unless is_device()).
    const std::string& control_topic() const { return control_topic_; }
    void authenticate(std::string client_id, bool is_device, std::string control_topic) {
        authenticated_ = true;
        client_id_ = std::move(client_id);
        is_device_ = is_device;
        control_topic_ = std::move(control_topic);
    }

    // For the ACL: the user (empty when anonymous) and a JWT's narrowing grant.
    const std::string& username() const { return username_; }
    const acl_grant* grant() const { return grant_ ? &*grant_ : nullptr; }
    void set_acl_identity(std::string username, std::optional<acl_grant> grant) {
        username_ = std::move(username);
        grant_ = std::move(grant);
    }
    token_state& token_info() { return token_info_; }
    const token_state& token_info() const { return token_info_; }

    // Credentials from the WebSocket handshake, used when `auth` carries none. Most clients
    // present none, so nothing is allocated for them.
    const handshake_credentials& handshake() const {
        static const handshake_credentials none;
        return handshake_ ? *handshake_ : none;
    }
    void set_handshake(handshake_credentials h) {
        if (h.empty()) {
            handshake_.reset();
        } else {
            handshake_ = std::make_unique<handshake_credentials>(std::move(h));
        }
    }

    device_state& device() { return device_; }
    const device_state& device() const { return device_; }
    liveness& live() { return liveness_; }
    const liveness& live() const { return liveness_; }
    pacing_state& pacing() { return pacing_; }
    const pacing_state& pacing() const { return pacing_; }

    // Publish rate limit: a token bucket of `burst` tokens refilled at `rate` per second.
    bool take_publish_token(std::int64_t now_ms, double rate, double burst) {
        if (rate <= 0) return true;
        if (!publish_bucket_) publish_bucket_ = token_bucket(rate, burst, now_ms);
        return publish_bucket_->take(now_ms);
    }

    // Resume: the secret a client presents to take this session over after a drop. Empty when
    // the client opted out (then deliveries carry no `seq` and nothing is kept after a drop).
    const std::string& token() const { return token_; }
    void set_token(std::string token) { token_ = std::move(token); }
    bool resumable() const { return !token_.empty(); }

    // The connection currently attached (0 while detached, waiting for a resume).
    connection_id connection() const { return connection_; }
    // A connection (the first, or a new one resuming the session) starts with a fresh budget:
    // nothing of the old connection's socket is on it.
    void attach(connection_id c) {
        connection_ = c;
        detached_until_ms_ = 0;
        liveness_.closing = false;
        liveness_.reading_paused = false;
        pacing_.budget = send_budget{};
        pacing_.replay_allowance = 0;
    }
    void detach(std::int64_t keep_until_ms) {
        connection_ = 0;
        detached_until_ms_ = keep_until_ms;
        outbox_.disconnect();
        pacing_.budget = send_budget{};
        pacing_.replay_allowance = 0;
    }
    std::int64_t detached_until_ms() const { return detached_until_ms_; }

    subscription_map& subscriptions() { return subscriptions_; }
    const subscription_map& subscriptions() const { return subscriptions_; }

    // Of this client's filters that match `topic`, the one a delivery goes out under: the
    // highest qos, then the smallest filter. The choice is deterministic so that when the broker
    // sends one copy of a message per matching upstream subscription (MQTT v5), the client
    // receives exactly the copy of its chosen filter: once, at the best qos it asked for.
    // `usable(client_subscription)`: choose only among these (e.g. those the broker confirmed).
    template <class Usable>
    subscription_ref best_match(std::string_view topic, Usable&& usable) const;
    subscription_ref best_match(std::string_view topic) const {
        return best_match(topic, [](const client_subscription&) { return true; });
    }

    outbox& deliveries() { return outbox_; }
    const outbox& deliveries() const { return outbox_; }

    // QoS 2 publishes by the client's msgid (JSON text), bounded to the most recent ones.
    publish_memory* recall_publish(const std::string& msgid);
    publish_memory& remember_publish(const std::string& msgid);

    session_counters& counters() { return counters_; }
    const session_counters& counters() const { return counters_; }

    // Fan-out scratch (router): the broker message this session was last considered for, so
    // that one message matching several filters of the client is delivered once.
    std::uint64_t last_fanout = 0;

    // For a fan-out (router::route), a few sessions ahead: the cache lines every delivery
    // touches (the members from last_fanout to the pacing budget, kept first for this), then
    // the node of its first subscription. Inlined by force, like outbox::prefetch_history.
    [[gnu::always_inline]] void prefetch_for_delivery() const {
        const char* end = reinterpret_cast<const char*>(&pacing_.budget + 1);
        for (const char* p = reinterpret_cast<const char*>(this); p < end; p += 64)
            __builtin_prefetch(p, 1);
    }
    [[gnu::always_inline]] void prefetch_first_subscription() const {
        if (!subscriptions_.empty()) __builtin_prefetch(&*subscriptions_.begin());
    }

  private:
    static constexpr std::size_t remembered_publishes = 1024;

    // First (after last_fanout), what every delivery reads or writes (router, delivery_pacer,
    // outbox): with thousands of sessions each delivery is a cache miss per line of its session
    // it touches, so these share as few lines as their sizes allow (docs/benchmarks.md).
    connection_id connection_ = 0;
    bool authenticated_ = false;
    bool is_device_ = false;
    liveness liveness_;
    session_counters counters_;
    std::string token_;
    subscription_map subscriptions_;
    pacing_state pacing_;
    outbox outbox_;
    // The rest: read per request, not per delivery.
    session_key key_;
    std::string remote_address_;
    std::string client_id_;
    std::string control_topic_;
    std::string username_;
    std::optional<acl_grant> grant_;
    token_state token_info_;
    std::unique_ptr<handshake_credentials> handshake_;
    device_state device_;
    std::optional<token_bucket> publish_bucket_;  // created by the first publish
    std::int64_t detached_until_ms_ = 0;
    std::unordered_map<std::string, publish_memory> publishes_;
    fifo<std::string> publish_order_;  // oldest first, to bound publishes_
};

template <class Usable>
session::subscription_ref session::best_match(std::string_view topic, Usable&& usable) const {
    subscription_ref best = nullptr;
    for (const auto& entry : subscriptions_) {
        if (!usable(entry.second) || !topic::matches(entry.first, topic)) continue;
        // Map order is by filter, so the first match at a qos is the smallest filter.
        if (best == nullptr || entry.second.qos > best->second.qos) best = &entry;
    }
    return best;
}

}  // namespace mqttws
