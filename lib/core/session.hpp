// One client session: who the client is, what it subscribed to, what it was sent.
//
// A session starts with a WebSocket connection and normally ends with it. When the connection
// drops without a clean close, the session is kept for the resume window: its subscriptions stay
// in the registry and its deliveries keep being recorded in its outbox, so a client that comes
// back with the session token continues where it stopped (see engine::handle(auth)).
// The subscription registry points at sessions, so a session leaves the registry before it is
// destroyed (engine::end_session does both).
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

namespace mqttws {

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

class session {
  public:
    using subscription_map = std::map<std::string, client_subscription, std::less<>>;
    using subscription_ref = const subscription_map::value_type*;

    session(std::uint64_t key, std::string remote_address, outbox_limits limits = {})
        : key_(key), remote_address_(std::move(remote_address)), outbox_(limits) {}

    // The engine's handle for this session (never reused).
    std::uint64_t key() const { return key_; }
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

    // The token the client authenticated with: when it expires (wall-clock ms; 0: never), its
    // id (`jti`), and whether the client was told it is about to expire.
    std::int64_t token_expires_ms = 0;
    std::optional<std::string> token_id;
    bool token_expiry_told = false;

    // For the ACL: the user (empty when anonymous) and a JWT's narrowing grant.
    const std::string& username() const { return username_; }
    const acl_grant* grant() const { return grant_ ? &*grant_ : nullptr; }
    void set_acl_identity(std::string username, std::optional<acl_grant> grant) {
        username_ = std::move(username);
        grant_ = std::move(grant);
    }

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
    // Before authentication: when the connection is closed for not authenticating (0: never).
    std::int64_t auth_deadline_ms = 0;
    // Heartbeat: when the client last showed it is alive, and when it was last pinged.
    std::int64_t last_alive_ms = 0;
    std::int64_t last_ping_ms = 0;
    // The client asked for `ping` frames (`"heartbeat":true`): it is sent one whenever nothing
    // else went to it for the ping interval (`last_sent_ms`: when something last did).
    bool app_pings = false;
    std::int64_t last_sent_ms = 0;
    // The engine has asked for this connection to be closed (timeout, slow consumer): it is not
    // closed (nor counted) again while the close handshake runs.
    bool closing = false;

    // Flow control: what the current connection holds on its way out (see send_budget), and the
    // QoS 0 messages held back for the client (conflation, maxRate) with their size.
    send_budget& budget() { return budget_; }
    const send_budget& budget() const { return budget_; }
    std::map<std::string, held_message, std::less<>> held;             // by topic
    std::size_t held_bytes = 0;                                        // their bodies' size
    std::unordered_map<std::string, std::int64_t> last_sent_by_topic;  // for maxRate

    // Batched delivery: finished `message` frames waiting to go out in one `batch` frame.
    std::vector<std::string> batch;
    std::size_t batch_bytes = 0;
    std::uint16_t batch_max = 0;
    std::int64_t batch_due_ms = 0;

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
        closing = false;
        budget_ = send_budget{};
    }
    void detach(std::int64_t keep_until_ms) {
        connection_ = 0;
        detached_until_ms_ = keep_until_ms;
        outbox_.disconnect();
        budget_ = send_budget{};
    }
    std::int64_t detached_until_ms() const { return detached_until_ms_; }

    subscription_map& subscriptions() { return subscriptions_; }
    const subscription_map& subscriptions() const { return subscriptions_; }

    // Of this client's filters that match `topic`, the one a delivery goes out under: the
    // highest qos, then the smallest filter. The choice is deterministic so that when the broker
    // sends one copy of a message per matching upstream subscription (MQTT v5), the client
    // receives exactly the copy of its chosen filter: once, at the best qos it asked for.
    // `confirmed_only`: choose among filters the broker has confirmed — only those have copies.
    subscription_ref best_match(std::string_view topic, bool confirmed_only = false) const;

    outbox& deliveries() { return outbox_; }
    const outbox& deliveries() const { return outbox_; }

    // QoS 2 publishes by the client's msgid (JSON text), bounded to the most recent ones.
    publish_memory* recall_publish(const std::string& msgid);
    publish_memory& remember_publish(const std::string& msgid);

    session_counters& counters() { return counters_; }
    const session_counters& counters() const { return counters_; }

    // Fan-out scratch: the broker message this session was last considered for, so that one
    // message matching several filters of the client is delivered once.
    std::uint64_t last_fanout = 0;

  private:
    static constexpr std::size_t remembered_publishes = 1024;

    std::uint64_t key_;
    std::string remote_address_;
    bool authenticated_ = false;
    std::string client_id_;
    bool is_device_ = false;
    std::string control_topic_;
    std::string username_;
    std::optional<acl_grant> grant_;
    std::unique_ptr<handshake_credentials> handshake_;
    std::optional<token_bucket> publish_bucket_;  // created by the first publish
    std::string token_;
    connection_id connection_ = 0;
    std::int64_t detached_until_ms_ = 0;
    subscription_map subscriptions_;
    outbox outbox_;
    send_budget budget_;
    std::unordered_map<std::string, publish_memory> publishes_;
    fifo<std::string> publish_order_;  // oldest first, to bound publishes_
    session_counters counters_;
};

}  // namespace mqttws
