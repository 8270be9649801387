// What the engine is configured with, one struct per concern, each read by the component that
// owns the concern. The command line (bridge/options.cpp) fills it; `broker_session` is shared
// with the upstream client so that the two cannot disagree.
// Thread safety: plain values, read-only once the engine runs.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/acl.hpp"
#include "core/authenticator.hpp"
#include "core/frame_signature.hpp"
#include "core/outbox.hpp"
#include "core/requests.hpp"
#include "core/revocation.hpp"
#include "core/topic.hpp"

namespace mqttws {

// The bridge's one MQTT session at the broker.
struct broker_session {
    // 3 (3.1.1) or 5: changes routing and retained handling (upstream_subscriptions.hpp).
    int mqtt_version = 5;
    // The broker keeps the bridge's session across disconnects and restarts: subscriptions it
    // already holds are not repeated after a reconnect, QoS >= 1 messages are queued meanwhile.
    bool persistent_session = false;
};

// auth_gate: authentication, tokens while connected, signed device frames.
struct auth_config {
    // How long a client may take to authenticate when credentials are required.
    std::int64_t auth_timeout_ms = 10000;
    // Put before every session token this engine issues. Engine shards: the shard's
    // (session_token_prefix() in broker_hub.hpp), so that a resume on another thread finds it.
    std::string session_token_prefix;
    // Failed attempts one remote address, and one user's password, may see per minute.
    std::size_t failures_per_minute = 10;
    std::size_t failures_per_user_per_minute = 10;
    // IPv6 addresses count as one address per prefix of this many bits (as the connection
    // limits count them, --ipv6-prefix): one host usually holds a whole /64.
    unsigned ipv6_prefix = 64;
    // A client whose token (a JWT's exp) expires is sent `token_expiring` this long before, and
    // closed with 4401 at expiry unless it sent a new token (`refresh`).
    std::int64_t token_expiry_warning_ms = 60000;
    // Signed device frames (--device-keys): how far a frame's `ts` may be from the bridge's
    // clock, and how many nonces are remembered per device within that window.
    std::int64_t replay_window_ms = 30000;
    std::size_t replay_nonces_per_device = 4096;
};

// delivery_pacer: liveness and flow control (docs/protocol.md, "Heartbeat" and "Slow consumers
// and conflation").
struct flow_config {
    // A client silent for ping_interval_ms is pinged; one silent for idle_timeout_ms (no frame,
    // no pong) is closed with 4001 — also how half-open connections are found.
    std::int64_t ping_interval_ms = 30000;
    std::int64_t idle_timeout_ms = 90000;
    // Each client's outgoing budget — every byte queued for it, replies included — and how long
    // it may stay over it before it is closed with 4008 (unless only conflatable QoS 0 messages
    // wait for it). A client that has not authenticated yet gets `pre_auth_queued_bytes` at most.
    std::size_t max_queued_bytes = 1u << 20;
    std::size_t pre_auth_queued_bytes = 64u << 10;
    std::int64_t slow_consumer_timeout_ms = 30000;
    // QoS 1/2 deliveries waiting for one client beyond its in-flight window: over this, a
    // connected client is closed with 4008 at once, and a detached session sheds the oldest
    // (its resume then reports the gap).
    std::size_t max_backlog_bytes = 8u << 20;
};

// publish_relay: client publishes towards the broker.
struct publish_config {
    // QoS >= 1 publishes held while the broker is unreachable, sent when it is back.
    std::size_t offline_queue_messages = 10000;
    std::size_t offline_queue_bytes = 16u << 20;
    // Per client publish rate limit (publishes per second, 0: none) and burst (0: max(1, rate)).
    double rate = 0;
    double burst = 0;
    // Publishes to these filters are written to the audit trail, besides the devices' control
    // topics (<prefix>/+/control), which always are.
    std::vector<std::string> audit_topics;
};

// upstream_subscriptions: the filters held at the broker for the clients.
struct subscription_config {
    std::size_t max_per_client = 256;
    std::size_t retained_cache_bytes = 64u << 20;  // MQTT v5 retained_store bound
    std::int64_t retained_grace_ms = 2000;         // MQTT 3.1.1 replay window after SUBACK
    // After start-up with a persistent session, messages the broker had queued for filters no
    // client holds yet are kept this long and given to clients that subscribe to them.
    std::int64_t restart_hold_ms = 30000;
    std::size_t restart_hold_messages = 100000;
};

// presence_keeper and command_desk: devices and commands (docs/protocol.md, "Devices and
// commands"). In topic templates `{id}` is a device id and `{bridge}` the bridge's id.
struct device_config {
    std::string bridge_id = "mqttws-bridge";  // names this bridge (its MQTT client id)
    // Retained {"online":…} per device; empty: no presence.
    std::string presence_topic = "devices/{id}/presence";
    // Retained {"online":…} of the bridge itself; its MQTT will says "bridge-lost".
    std::string bridge_status_topic = "mqttws/{bridge}/status";
    // Where devices answer this bridge's commands (MQTT v5 Response Topic).
    std::string response_topic = "mqttws/{bridge}/responses";
    std::size_t max_commands = 10000;       // commands in flight (all clients)
    std::size_t known_devices = 100000;     // presence remembered for the offline check
    std::size_t idempotency_keys = 100000;  // remembered results of commands with a key
    std::int64_t idempotency_window_ms = 24LL * 3600 * 1000;
};

struct engine_config {
    broker_session broker;
    // An engine shard behind a broker_hub: it tells the hub of every filter it releases, also
    // while the broker connection is down (the hub sends upstream only what the broker needs).
    bool behind_hub = false;
    std::size_t shard = 0;   // ... and which one (config_for_shard); 0 for one engine
    std::size_t shards = 1;  // ... of how many
    device_config devices;
    topic::limits topic_limits;
    decode_limits decode;
    // Seed dialect: <prefix>/<id>/status|event|control.
    std::string device_topic_prefix = "devices";
    // How long a dropped client's session is kept for it to resume (0: never kept).
    std::int64_t resume_window_ms = 120000;
    // At most this many sessions wait for a resume at once (0: no limit); past it, the one
    // waiting longest ends, as if its window had run out. What one client can make the bridge
    // hold is bounded per session; this bounds how many sessions a stream of dropped
    // connections can leave behind. Engine shards share it (detached_sessions.hpp).
    std::size_t max_detached_sessions = 10000;
    outbox_limits outbox;  // in-flight window, retry time, resume history, per session
    auth_config auth;
    flow_config flow;
    publish_config publishing;
    subscription_config subscriptions;
};

// Who may connect and what they may do. Replaced as a whole on reload (SIGHUP).
struct security_policy {
    authenticator auth;        // default: no credential source, every client accepted
    acl rules;                 // default: not configured, everything allowed
    revocation_list revoked;   // default: empty
    device_keys signing_keys;  // devices that sign their frames (default: none)
};

}  // namespace mqttws
