// The bridge's state machine: events in, actions out. No sockets, threads or timers.
//
// Events are what happened at the edges — a connection opened, sent a text frame, went away;
// the broker connection came up, went down, delivered a message, confirmed an operation; time
// passed (`tick`). Each event handler appends the resulting actions to an `action_list` — frames
// to send, connections to close, SUBSCRIBE/UNSUBSCRIBE/PUBLISH to do upstream — which the app
// then carries out. So every rule of the protocol is unit-tested as "frames in → actions out".
//
// Connections and sessions: each connection gets a session; a session outlives its connection
// when the connection drops without a clean close (code 1000, or none), for `resume_window_ms`,
// keeping its subscriptions and recording what they match. A client that authenticates with the
// session's token takes it over and is sent everything after the `lastSeq` it names (outbox).
//
// How messages are routed (docs/protocol.md has the user's view):
// - All clients share ONE upstream MQTT connection. A filter is subscribed upstream when its
//   first client subscribes and unsubscribed when its last client leaves, at the highest QoS
//   any of its clients asked for (subscription_registry).
// - MQTT v5 (the default): each upstream filter carries a subscription identifier. Mosquitto
//   sends one copy of a message per matching subscription, tagged with its identifier; a copy
//   goes only to the clients of that filter, and a client holding several matching filters
//   takes only the copy of its `session::best_match` filter — so it receives each message once.
//   Subscriptions use retain-as-published, so the bridge sees every change to the broker's
//   retained store and keeps the retained messages of held topics (retained_store): a client
//   joining a filter the bridge already holds gets them from there, and the clients already
//   subscribed are not sent them again, with a single upstream SUBSCRIBE per filter.
// - MQTT 3.1.1: the broker sends one copy for overlapping subscriptions, untagged, and clears
//   the retain flag of live messages. Messages are routed by matching the topic against every
//   held filter (topic_trie). A joining client triggers a repeated SUBSCRIBE so that the broker
//   replays the retained messages. Mosquitto answers a SUBSCRIBE with its SUBACK and then the
//   replay, so a message with the retain flag set goes only to the clients that caused the
//   latest SUBACK of a matching filter, until `retained_grace_ms` after it.
//
// Thread safety: none. One engine per bridge, driven from one thread (the app's io_context).
#pragma once

#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "core/acl.hpp"
#include "core/actions.hpp"
#include "core/auth_limiter.hpp"
#include "core/authenticator.hpp"
#include "core/frame_signature.hpp"
#include "core/message_body.hpp"
#include "core/outbox.hpp"
#include "core/platform.hpp"
#include "core/replies.hpp"
#include "core/requests.hpp"
#include "core/retained_store.hpp"
#include "core/revocation.hpp"
#include "core/session.hpp"
#include "core/subscriptions.hpp"
#include "core/text.hpp"
#include "core/topic.hpp"

namespace mqttws {

struct engine_config {
    int mqtt_version = 5;  // 3 (3.1.1) or 5: changes routing and retained handling, see above
    topic::limits topic_limits;
    decode_limits decode;
    std::string device_topic_prefix =
        "devices";  // seed dialect: <prefix>/<id>/status|event|control
    std::size_t max_subscriptions_per_client = 256;
    // Publishes of qos >= 1 held while the broker is unreachable, sent when it is back.
    std::size_t offline_queue_messages = 10000;
    std::size_t offline_queue_bytes = 16u << 20;
    std::size_t retained_cache_bytes = 64u << 20;  // MQTT v5 retained_store bound
    std::int64_t retained_grace_ms = 2000;         // MQTT 3.1.1 replay window after SUBACK
    // How long a dropped client's session is kept for it to resume (0: never kept).
    std::int64_t resume_window_ms = 120000;
    outbox_limits outbox;  // in-flight window, retry time, resume history, per session
    // The broker keeps the bridge's session across disconnects (see upstream_options):
    // subscriptions it already holds are not repeated after a reconnect.
    bool persistent_session = false;
    // After start-up with a persistent session, messages the broker had queued for filters no
    // client holds yet are kept this long and given to clients that subscribe to them.
    std::int64_t restart_hold_ms = 30000;
    std::size_t restart_hold_messages = 100000;
    // Authentication: how long a client may take to authenticate when credentials are
    // required, and how many failed attempts one remote address, and one user's password, may
    // see per minute (auth_limiter).
    std::int64_t auth_timeout_ms = 10000;
    std::size_t auth_failures_per_minute = 10;
    std::size_t auth_failures_per_user_per_minute = 10;
    // A client whose token (a JWT's exp) expires is sent `token_expiring` this long before, and
    // closed with 4401 at expiry unless it sent a new token (`refresh`).
    std::int64_t token_expiry_warning_ms = 60000;
    // Signed device frames (--device-keys): how far a frame's `ts` may be from the bridge's
    // clock, and how many nonces are remembered per device within that window.
    std::int64_t replay_window_ms = 30000;
    std::size_t replay_nonces_per_device = 4096;
    // Per client publish rate limit (publishes per second, 0: none) and burst.
    // Heartbeat: a client idle for ping_interval_ms is pinged; one idle for idle_timeout_ms
    // (no frame, no pong) is closed with 4001 — also how half-open connections are found.
    std::int64_t ping_interval_ms = 30000;
    std::int64_t idle_timeout_ms = 90000;
    // Flow control (docs/protocol.md, "Slow consumers and conflation"): each client's outgoing
    // budget — every byte queued for it, replies included — and how long it may stay over it
    // before it is closed with 4008 (unless only conflatable QoS 0 messages wait for it). A
    // client that has not authenticated yet gets `pre_auth_queued_bytes` at most.
    std::size_t max_queued_bytes = 1u << 20;
    std::size_t pre_auth_queued_bytes = 64u << 10;
    std::int64_t slow_consumer_timeout_ms = 30000;
    // QoS 1/2 deliveries waiting for one client beyond its in-flight window: over this, a
    // connected client is closed with 4008 at once, and a detached session sheds the oldest
    // (its resume then reports the gap).
    std::size_t max_backlog_bytes = 8u << 20;
    double publish_rate = 0;
    double publish_burst = 0;
    // Publishes to these filters are written to the audit trail, besides the devices' control
    // topics (<prefix>/+/control), which always are.
    std::vector<std::string> audit_topics;
};

// Who may connect and what they may do. Replaced as a whole on reload (SIGHUP).
struct security_policy {
    authenticator auth;        // default: no credential source, every client accepted
    acl rules;                 // default: not configured, everything allowed
    revocation_list revoked;   // default: empty
    device_keys signing_keys;  // devices that sign their frames (default: none)
};

// One message from the broker, copied off the MQTT client's thread.
struct broker_message {
    std::string topic;
    std::string payload;
    std::uint8_t qos = 0;
    bool retained = false;
    bool duplicate = false;  // the broker sent it again after a reconnect (MQTT DUP flag)
    std::vector<std::uint32_t> subscription_ids;  // MQTT v5; empty with 3.1.1
};

// Frames the bridge sends, by type, for metrics.
enum class out_kind : std::uint8_t {
    auth_response,
    suback,
    unsuback,
    ack,
    error,
    pong,
    status,
    message,
    batch,
    ping,
    token_expiring,
    refresh_response,
    count
};
// Frames clients send, by type: the request kinds in client_request order, then these.
enum class in_kind : std::uint8_t {
    auth,
    subscribe,
    unsubscribe,
    publish,
    ack,
    ping,
    device_report,
    batch,
    refresh,
    binary,
    invalid,
    count
};
std::string_view name(out_kind k);
std::string_view name(in_kind k);

// Ack latency of QoS 1/2 deliveries (ms from sending to the client's ack): bucket upper bounds.
inline constexpr std::int64_t ack_latency_bounds_ms[] = {1,   2,   5,    10,   25,   50,   100,
                                                         250, 500, 1000, 2500, 5000, 10000};
inline constexpr std::size_t ack_latency_buckets =
    sizeof(ack_latency_bounds_ms) / sizeof(std::int64_t) + 1;

struct engine_stats {
    std::size_t connections = 0;
    std::size_t sessions = 0;  // including detached ones waiting for a resume
    std::size_t filters = 0;   // filters held upstream
    bool upstream_up = false;
    std::uint64_t upstream_connects = 0;
    std::uint64_t messages_in = 0;         // from the broker
    std::uint64_t deliveries = 0;          // deliveries to clients for those messages
    std::uint64_t redeliveries = 0;        // QoS >= 1 deliveries resent for want of an ack
    std::uint64_t publishes = 0;           // client publishes relayed upstream
    std::uint64_t publishes_dropped = 0;   // qos 0 publishes dropped while the broker was down
    std::uint64_t publishes_refused = 0;   // qos >= 1 publishes refused (offline queue full)
    std::uint64_t publish_duplicates = 0;  // QoS 2 resends answered without publishing again
    std::uint64_t resumes = 0;             // sessions taken over by a new connection
    std::uint64_t resumes_with_gap = 0;    // ...that could not replay everything (resumed:false)
    std::uint64_t auth_failures = 0;
    std::uint64_t denied = 0;              // requests refused by the ACL
    std::uint64_t rate_limited = 0;        // publishes refused by the rate limit
    std::uint64_t conflated = 0;           // QoS 0 deliveries replaced by a newer one (per client)
    std::uint64_t dropped = 0;             // QoS 0 deliveries not sent (over budget, no conflation)
    std::uint64_t slow_consumers = 0;      // clients closed with 4008
    std::uint64_t backlog_shed = 0;        // QoS 1/2 deliveries dropped: a session's backlog full
    std::uint64_t heartbeat_timeouts = 0;  // clients closed with 4001
    std::uint64_t token_expiries = 0;      // clients closed with 4401 when their token expired
    std::uint64_t token_refreshes = 0;     // tokens replaced while connected
    std::uint64_t revoked = 0;             // clients closed (or sessions ended) on revocation
    std::uint64_t signatures_refused = 0;  // device frames refused: bad or missing signature
    std::uint64_t replays_refused = 0;     // signed device frames refused as replays
    std::uint64_t frames_in[static_cast<std::size_t>(in_kind::count)] = {};
    std::uint64_t frames_out[static_cast<std::size_t>(out_kind::count)] = {};
    std::uint64_t ack_latency[ack_latency_buckets] = {};  // counts per bucket (last: +Inf)
    std::int64_t ack_latency_sum_ms = 0;
    // Gauges, computed by stats():
    std::size_t inflight = 0;  // QoS 1/2 deliveries awaiting acks
    std::size_t backlog = 0;   // QoS 1/2 deliveries waiting for room in a window
    std::size_t backlog_bytes = 0;
    std::size_t held = 0;       // QoS 0 messages held (conflation, maxRate)
    std::size_t congested = 0;  // connected clients over their outgoing budget
    std::size_t queued_bytes =
        0;  // bytes queued for connected clients (estimates, see send_budget)
    std::size_t offline_queued = 0;
    std::size_t retained_cached = 0;
    std::size_t parked = 0;
};

// One client's session as operators see it (GET /clients).
struct session_summary {
    std::string client_id;
    std::string remote_address;
    bool connected = false;
    std::size_t subscriptions = 0;
    session_counters counters;
    std::size_t inflight = 0;
    std::size_t backlog = 0;
    std::size_t held = 0;
    bool congested = false;
};

class engine {
  public:
    engine(engine_config config, platform& env,
           std::shared_ptr<const security_policy> policy = std::make_shared<security_policy>());
    ~engine();
    engine(const engine&) = delete;
    engine& operator=(const engine&) = delete;

    // ---- connection events ----
    // `handshake`: credentials from the WebSocket upgrade (bearer token, client certificate).
    void client_opened(connection_id id, std::string remote_address,
                       handshake_credentials handshake, action_list& out);
    void client_text(connection_id id, std::string_view frame, action_list& out);
    // The connection ended with close `code` (1006: no close frame), sent by the client
    // (`by_peer`) or by the bridge. A client ends its session by closing with 1000 or no code;
    // the bridge's own closes end it too, except those a client recovers from by reconnecting
    // (4001 heartbeat on a half-open connection, 4008 slow consumer, 4401 token expired). After
    // any other close the session waits `resume_window_ms` for a resume.
    void client_closed(connection_id id, std::uint16_t code, bool by_peer, action_list& out);
    // Proof of life that is not a frame: a pong from the client.
    void client_alive(connection_id id);
    // A WebSocket ping from the client with `payload_bytes` of payload: proof of life, and a pong
    // of that size to queue, which counts against its budget like any frame. Returns whether to
    // answer it (not when the client is being closed, e.g. for not reading its pongs).
    bool client_pinged(connection_id id, std::size_t payload_bytes, action_list& out);
    // A binary frame: a publish with a raw payload (docs/protocol.md, "Binary frames").
    void client_binary(connection_id id, std::string_view frame, action_list& out);

    // ---- flow control ----
    // Clients over their outgoing budget, waiting to drain. While there are any, the edge calls
    // poll_congested() often (every millisecond): the engine asks the platform how much each
    // still holds, and one back under half its budget gets what was held back for it.
    std::size_t congested_count() const { return congested_.size(); }
    void poll_congested(action_list& out);

    // ---- upstream events ----
    void upstream_connected(bool session_present, action_list& out);
    void upstream_lost(std::string_view reason, action_list& out);
    void upstream_message(const broker_message& message, action_list& out);
    // `granted` is the SUBACK return code: 0..2, or >= 0x80 (or < 0) when refused/failed.
    void upstream_subscribed(op_id op, int granted, action_list& out);
    // qos >= 1 publish confirmed (PUBACK / PUBCOMP: no error) or failed.
    void upstream_published(op_id op, std::optional<errc> error, std::string_view message,
                            action_list& out);

    // ---- time and lifecycle ----
    void tick(action_list& out);
    // Closes every connection with 1001 (the bridge is going away).
    void shutdown(action_list& out);
    // A new security policy (reload): existing connections stay; subscriptions the new ACL does
    // not allow are removed and their clients told with an `error` frame.
    void set_security(std::shared_ptr<const security_policy> policy, action_list& out);

    engine_stats stats() const;
    // Authenticated sessions, those with the most conflated + dropped messages first.
    std::vector<session_summary> sessions(std::size_t limit) const;
    const engine_config& config() const { return config_; }

  private:
    struct pending_subscribe {
        std::string filter;
        std::vector<std::uint64_t> replay_to;  // MQTT 3.1.1: sessions the broker's replay is for
    };
    struct pending_publish {
        std::uint64_t owner = 0;  // session key
        msg_id reply_to;          // empty: nobody waits for an ack
        publish_upstream request;
        int attempts = 0;                      // how many broker connections it was sent on
        std::uint64_t sent_on_connection = 0;  // stats_.upstream_connects when last sent
    };
    struct parked_message {
        std::shared_ptr<const message_body> body;
        std::string topic;
        std::uint8_t qos = 0;
    };

    session* find_session(connection_id id);
    session* find_session_by_key(std::uint64_t key);
    void send(session& s, out_kind kind, frame_ptr frame, action_list& out, bool binary = false);
    void send(session& s, out_kind kind, std::string text, action_list& out) {
        send(s, kind, make_frame(std::move(text)), out);
    }
    // Counts `bytes` handed to `s`'s connection against its budget; may make it congested, or
    // close it (twice the budget in answers alone).
    void count_outgoing(session& s, std::size_t bytes, action_list& out);
    void send_error(session& s, errc code, std::string_view message, const msg_id& id,
                    action_list& out, std::string_view topic = {});
    void broadcast(const frame_ptr& frame, action_list& out);

    // `id`: the msgid of the request that needs it, for the not_authenticated answer.
    bool ensure_authenticated(session& s, const msg_id& id, action_list& out);
    void authenticate(session& s, identity who, bool is_device, action_list& out);
    // Checks what `s` presented (the `auth` frame, or null: the handshake alone) under the
    // limits on failed attempts; on refusal closes the connection (4403, or 4429 when over a
    // limit) and returns nullopt.
    std::optional<identity> check_credentials(session& s, const auth_request* frame,
                                              action_list& out);
    void audit(const session& s, std::string event, std::string topic, std::string detail,
               action_list& out);
    bool audited_topic(std::string_view topic) const;
    // `who`: the identity the new connection authenticated as (the session's client).
    void resume(session& fresh, session& old, const auth_request& r, identity who,
                action_list& out);
    void end_session(session& s, action_list& out);

    void handle(session& s, auth_request& r, action_list& out);
    void handle(session& s, subscribe_request& r, action_list& out);
    void handle(session& s, unsubscribe_request& r, action_list& out);
    void handle(session& s, publish_request& r, action_list& out);
    void handle(session& s, ack_request& r, action_list& out);
    void handle(session& s, ping_request& r, action_list& out);
    void handle(session& s, device_report_request& r, action_list& out);
    void handle(session& s, batch_request& r, action_list& out);
    void handle(session& s, refresh_request& r, action_list& out);
    // For a device with a key (--device-keys): the frame is signed (or need not be), its
    // signature verifies, and it is not a replay. Otherwise refuses it and returns false.
    bool signature_accepted(session& s, std::string_view frame, const client_request& request,
                            action_list& out);
    // Removes the subscriptions the ACL (with the session's current grant) no longer allows.
    void recheck_subscriptions(session& s, std::string_view why, action_list& out);
    // What the session's credentials allow and until when: the user, a JWT's ACL claims, its
    // exp and jti (moved out of `who`).
    void take_credentials(session& s, identity& who);
    // Expiry of the session's token: `token_expiring` ahead of it, 4401 at it.
    void check_token(session& s, std::int64_t wall_now, action_list& out);

    // Adds `s` to `filter` and does what that needs upstream and for retained messages.
    void subscribe(session& s, const std::string& filter, std::uint8_t qos,
                   const subscription_options& options, std::optional<msg_id> reply,
                   action_list& out);
    // `broker_refused`: the broker refused the SUBSCRIBE; nothing to undo upstream for it.
    void unsubscribe(session& s, const std::string& filter, action_list& out,
                     bool broker_refused = false);
    // `replay_to`: MQTT 3.1.1 only, the sessions that get the retained messages the broker
    // replays after this SUBSCRIBE (see upstream_subscribed).
    op_id subscribe_upstream_now(upstream_filter& entry, bool replay_retained,
                                 std::vector<std::uint64_t> replay_to, action_list& out);
    void release_filter(std::string_view filter, std::uint32_t subscription_id,
                        bool unsubscribe_upstream_too, action_list& out);
    // Sends `s` the current retained messages of `filter` (a client joining a held filter).
    void send_retained(session& s, const std::string& filter, const client_subscription& sub,
                       action_list& out);
    void deliver_parked(session& s, std::string_view filter, const client_subscription& sub,
                        action_list& out);

    void publish(session& s, std::string topic, std::string payload, std::uint8_t qos, bool retain,
                 const msg_id& reply_to, action_list& out);
    void publish_now(pending_publish p, action_list& out);
    void queue_offline(pending_publish p);
    // A publish whose broker connection went away before the broker confirmed it: held with the
    // offline queue, in front of everything published after it, until the next connection.
    void queue_retry(pending_publish p);
    void flush_offline_queue(action_list& out);
    void refuse_publish(session& s, std::uint8_t qos, const msg_id& reply_to, errc code,
                        std::string_view message, action_list& out);
    void answer_publish(session& s, const msg_id& reply_to, std::optional<errc> error,
                        std::string_view message, action_list& out);

    // One message to one client, under the options of the subscription it came through: QoS 0
    // may be held (maxRate, conflation); everything else goes through the session's outbox.
    void deliver(session& s, const std::shared_ptr<const message_body>& body, std::uint8_t qos,
                 const subscription_options& options, action_list& out);
    void release_held(session& s, std::int64_t now, action_list& out);
    // Over budget for longer than slow_consumer_timeout_ms, and not only for want of sending it
    // conflatable QoS 0 messages? (then it is closed with 4008)
    bool slow_consumer(session& s, std::int64_t now);
    // The tick's work for a connected session in good standing: held messages, due batches,
    // heartbeat pings, resends.
    void tick_connected(session& s, std::int64_t now, action_list& out);
    void flush_batch(session& s, action_list& out);
    // Renders one delivery for `s` and queues it (the outbox's sink).
    void send_delivery(session& s, const delivery& d, bool dup, action_list& out);
    class session_sink;

    // ---- the outgoing budget (send_budget) ----
    // Every public event handler starts a new event (see send_budget::measure).
    void begin_event() { ++event_; }
    std::size_t budget_limit(const session& s) const;
    // Asks the platform what `s`'s connection holds; returns the budget's exact estimate.
    std::size_t measure(session& s);
    void enter_congestion(session& s);
    // `s` drained to half its budget: sends what was held back.
    void leave_congestion(session& s, action_list& out);
    // QoS 1/2 waiting beyond max_backlog_bytes: close a connected client, shed a detached one.
    void bound_backlog(session& s, action_list& out);

    engine_config config_;
    platform& env_;
    std::shared_ptr<const security_policy> policy_;
    frame_decoder decoder_;
    subscription_registry registry_;
    retained_store retained_;
    std::unordered_map<std::uint64_t, std::unique_ptr<session>> sessions_;  // by session key
    std::unordered_map<connection_id, session*> connections_;
    std::unordered_map<std::string, session*> tokens_;
    std::unordered_map<std::uint32_t, upstream_filter*> filters_by_subscription_id_;
    std::unordered_map<op_id, pending_subscribe> pending_subscribes_;
    std::unordered_map<op_id, pending_publish> pending_publishes_;
    std::deque<pending_publish> offline_queue_;
    std::size_t offline_queue_bytes_ = 0;
    std::vector<std::string> open_replay_windows_;  // MQTT 3.1.1: filters with replay targets
    std::unordered_set<std::string> released_while_down_;  // persistent session: to unsubscribe
    std::deque<parked_message> parked_;
    std::int64_t parked_until_ms_ = 0;  // 0: not holding (see restart_hold_ms)
    auth_limiter auth_limits_;
    replay_guard replays_;
    bool connected_before_ = false;

    bool upstream_up_ = false;
    bool shutting_down_ = false;
    op_id next_op_ = 1;
    std::uint64_t next_session_key_ = 1;
    std::uint32_t next_subscription_id_ = 1;
    std::uint64_t fanout_serial_ = 0;
    std::uint64_t event_ = 0;                 // see begin_event()
    std::unordered_set<session*> congested_;  // connected sessions over their budget
    engine_stats stats_;

    // Scratch for upstream_message, kept to avoid reallocating per message.
    struct fanout_target {
        session* who;
        std::uint8_t qos;
        const subscription_options* options;
    };
    std::vector<fanout_target> targets_;
    std::vector<upstream_filter*> routed_filters_;
};

}  // namespace mqttws
