#include "options.hpp"

#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <iostream>
#include <thread>

#include "core/presence.hpp"
#include "core/text.hpp"
#include "io/log.hpp"

namespace mqttws {
namespace {

std::string default_client_id() {
    char host[256] = {};
    if (gethostname(host, sizeof host - 1) != 0 || host[0] == '\0') return "mqttws-bridge";
    return std::string("mqttws-") + host;
}

}  // namespace

std::optional<int> parse_options(int argc, char** argv, app_config& out) {
    CLI::App cli{
        "mqttws-bridge: MQTT over WebSocket. Browsers and devices speak a small JSON\n"
        "protocol over WebSocket; the bridge holds one shared MQTT connection to the broker.\n"
        "Protocol: docs/protocol.md. Every option can also be set in a --config file."};
    cli.option_defaults()->always_capture_default();
    cli.set_config("--config", "",
                   "Read options from this TOML/INI file (keys are the long option names)");
    cli.set_version_flag("--version", std::string("mqttws-bridge ") + out.version);

    std::string log_level_name = "info";
    std::string log_format_name = "text";
    int mqtt_version = out.engine.broker.mqtt_version;
    int reconnect_max_ms = static_cast<int>(out.upstream.reconnect_max.count());
    int session_expiry_s = static_cast<int>(out.upstream.session_expiry.count());
    double auth_timeout_s = static_cast<double>(out.engine.auth.auth_timeout_ms) / 1000.0;
    double ping_interval_s = static_cast<double>(out.engine.flow.ping_interval_ms) / 1000.0;
    double idle_timeout_s = static_cast<double>(out.engine.flow.idle_timeout_ms) / 1000.0;
    double slow_consumer_timeout_s =
        static_cast<double>(out.engine.flow.slow_consumer_timeout_ms) / 1000.0;
    double handshake_timeout_s = static_cast<double>(out.server.handshake_timeout_ms) / 1000.0;
    double token_warning_s = static_cast<double>(out.engine.auth.token_expiry_warning_ms) / 1000.0;
    double replay_window_s = static_cast<double>(out.engine.auth.replay_window_ms) / 1000.0;
    bool dump_config = false;
    out.upstream.client_id = default_client_id();

    auto* net = "Network";
    cli.add_option("--broker", out.upstream.broker_uri,
                   "MQTT broker URI (tcp://, ssl://, ws://, wss://)")
        ->group(net);
    cli.add_option("--port", out.server.port, "WebSocket/HTTP port to listen on (0: any free port)")
        ->group(net);
    cli.add_option("--bind", out.server.bind_address,
                   "Address to listen on (::, the default: every IPv4 and IPv6 address; 0.0.0.0: "
                   "IPv4 only)")
        ->group(net);
    cli.add_option("--threads", out.threads,
                   "Threads that read and write the WebSocket connections. 1: the engine's "
                   "thread does it too. 0 (the default): one per core but the engine's (cores "
                   "- 1) with 4 or more cores, else 1. See docs/operations.md, 'Threads'")
        ->check(CLI::Range(0, 256))
        ->group(net);
    cli.add_flag("--engine-shards", out.engine_shards,
                 "Experimental, with --threads > 1: each thread keeps the sessions of the clients "
                 "it serves (an engine shard), instead of one engine thread for all. MQTT 5 "
                 "only. See docs/operations.md, 'Threads'")
        ->group(net);

    auto* mqtt = "Upstream MQTT";
    cli.add_option("--client-id", out.upstream.client_id,
                   "Client id of the bridge's one MQTT connection")
        ->group(mqtt);
    cli.add_option("--mqtt-version", mqtt_version,
                   "MQTT protocol version towards the broker: 3 (3.1.1) or 5")
        ->check(CLI::IsMember({3, 5}))
        ->group(mqtt);
    cli.add_option("--broker-username", out.upstream.username, "Username for the broker")
        ->group(mqtt);
    cli.add_option("--broker-password", out.upstream.password, "Password for the broker")
        ->group(mqtt);
    cli.add_option("--reconnect-max-ms", reconnect_max_ms,
                   "Longest wait between broker reconnect attempts")
        ->check(CLI::Range(500, 600000))
        ->group(mqtt);
    cli.add_flag("--persistent-session", out.engine.broker.persistent_session,
                 "Keep the broker-side session across reconnects and restarts (QoS 1/2 messages "
                 "queued meanwhile are delivered)")
        ->group(mqtt);
    cli.add_option("--session-expiry", session_expiry_s,
                   "MQTT 5: how long the broker keeps the persistent session, in seconds")
        ->check(CLI::Range(1, 4 * 7 * 24 * 3600))
        ->group(mqtt);
    cli.add_option("--upstream-inflight", out.upstream.max_inflight,
                   "Publishes handed to the MQTT client at once (not yet written, or not yet "
                   "acknowledged for QoS 1/2); the rest wait in order. See docs/operations.md, "
                   "'The way to the broker'")
        ->check(CLI::Range(std::size_t{1}, std::size_t{65535}))
        ->group(mqtt);
    cli.add_option("--upstream-queue-bytes", out.upstream.max_queued_bytes,
                   "Topics and payloads of the publishes waiting for the MQTT client; past it "
                   "a QoS 0 publish is dropped and a QoS 1/2 one answered rate_limited")
        ->check(CLI::Range(std::size_t{1024}, std::size_t{1} << 40))
        ->group(mqtt);
    cli.add_option("--restart-hold-ms", out.engine.subscriptions.restart_hold_ms,
                   "After a restart with a persistent session: how long messages the broker had "
                   "queued are held for clients that subscribe again")
        ->check(CLI::NonNegativeNumber)
        ->group(mqtt);

    auto* proto = "Protocol";
    cli.add_option("--device-topic-prefix", out.engine.device_topic_prefix,
                   "Topic prefix of the device dialect: <prefix>/<id>/status|event|control")
        ->group(proto);
    auto* devices = "Devices and commands";
    double idempotency_window_h =
        static_cast<double>(out.engine.devices.idempotency_window_ms) / 3600000.0;
    const auto topic_template = [](const std::string& value) -> std::string {
        if (value.empty()) return {};
        if (value.find_first_of("+#") != std::string::npos) return "no wildcards in a template";
        return {};
    };
    cli.add_option("--presence-topic", out.engine.devices.presence_topic,
                   "Retained presence of each device; {id} is the device id (empty: no presence)")
        ->check(CLI::Validator(
            [&](std::string& v) {
                if (v.empty()) return std::string();
                if (v.find("{id}") == std::string::npos) return std::string("needs {id}");
                return topic_template(v);
            },
            "TEMPLATE"))
        ->group(devices);
    cli.add_option("--bridge-status-topic", out.engine.devices.bridge_status_topic,
                   "Retained status of this bridge, also its MQTT will; {bridge} is --client-id "
                   "(empty: none)")
        ->check(CLI::Validator(topic_template, "TEMPLATE"))
        ->group(devices);
    cli.add_option("--response-topic", out.engine.devices.response_topic,
                   "Where devices answer this bridge's commands; {bridge} is --client-id")
        ->check(CLI::Validator(
            [&](std::string& v) {
                if (v.empty()) return std::string("must not be empty");
                return topic_template(v);
            },
            "TEMPLATE"))
        ->group(devices);
    cli.add_option("--max-commands", out.engine.devices.max_commands,
                   "Commands in flight on the bridge, all clients together")
        ->check(CLI::PositiveNumber)
        ->group(devices);
    cli.add_option("--idempotency-keys", out.engine.devices.idempotency_keys,
                   "Outcomes of commands with an idempotencyKey remembered")
        ->check(CLI::PositiveNumber)
        ->group(devices);
    cli.add_option("--idempotency-window", idempotency_window_h,
                   "How long (hours) a command's idempotencyKey is remembered")
        ->check(CLI::Range(0.001, 24.0 * 30))
        ->group(devices);
    cli.add_option("--state-dir", out.state_dir,
                   "Keep idempotency keys and reported presence across restarts in this directory")
        ->group(devices);

    cli.add_option("--max-frame-bytes", out.server.max_frame_bytes,
                   "Largest WebSocket message accepted (close 1009 above)")
        ->check(CLI::Range(std::size_t{256}, std::size_t{256} << 20))
        ->group(proto);
    cli.add_option("--max-subscriptions", out.engine.subscriptions.max_per_client,
                   "Subscriptions one client may hold")
        ->check(CLI::PositiveNumber)
        ->group(proto);
    cli.add_option("--offline-queue", out.engine.publishing.offline_queue_messages,
                   "QoS 1/2 publishes held while the broker is unreachable")
        ->group(proto);
    cli.add_option("--offline-queue-bytes", out.engine.publishing.offline_queue_bytes,
                   "Byte bound of that queue")
        ->group(proto);
    cli.add_option("--retained-cache-bytes", out.engine.subscriptions.retained_cache_bytes,
                   "Retained messages kept for clients joining a held filter (MQTT 5)")
        ->group(proto);

    auto* delivery = "Delivery";
    cli.add_option("--resume-window-ms", out.engine.resume_window_ms,
                   "How long a dropped client's session is kept for it to resume (0: never)")
        ->check(CLI::NonNegativeNumber)
        ->group(delivery);
    cli.add_option("--max-detached-sessions", out.engine.max_detached_sessions,
                   "Sessions waiting for a resume at once (0: no limit); past it the one waiting "
                   "longest ends")
        ->group(delivery);
    cli.add_option("--inflight-window", out.engine.outbox.window,
                   "QoS 1/2 deliveries a client may have unacknowledged at once")
        ->check(CLI::Range(std::size_t{1}, std::size_t{65535}))
        ->group(delivery);
    cli.add_option("--retry-ms", out.engine.outbox.retry_ms,
                   "Resend an unacknowledged QoS 1/2 delivery (with dup) after this")
        ->check(CLI::Range(100, 3600000))
        ->group(delivery);
    cli.add_option("--history-messages", out.engine.outbox.history_messages,
                   "Deliveries kept per session for resuming")
        ->group(delivery);
    cli.add_option("--history-bytes", out.engine.outbox.history_bytes,
                   "Encoded bytes of deliveries kept per session for resuming")
        ->group(delivery);

    auto* security = "Security";
    cli.add_option(
           "--password-file", out.security.password_file,
           "Mosquitto password file (mosquitto_passwd): clients authenticate as user/password")
        ->group(security);
    cli.add_option("--acl-file", out.security.acl_file,
                   "Mosquitto acl_file: what each client may publish and subscribe")
        ->group(security);
    cli.add_option("--jwt-secret", out.security.jwt_secret,
                   "HS256 secret for JWT tokens (at least 32 bytes)")
        ->group(security);
    cli.add_option("--jwt-secret-file", out.security.jwt_secret_file,
                   "File holding the HS256 secret; re-read on SIGHUP, so the secret can rotate")
        ->group(security);
    cli.add_option("--trusted-proxy", out.server.trusted_proxies,
                   "Address of a reverse proxy whose X-Forwarded-For names the client (repeatable)")
        ->expected(0, CLI::detail::expected_max_vector_size)
        ->group(security);
    cli.add_option("--jwt-public-key", out.security.jwt_public_key,
                   "PEM public key for RS256 or ES256 JWT tokens")
        ->group(security);
    cli.add_option("--jwt-jwks", out.security.jwt_jwks,
                   "JSON Web Key Set file (RS256/ES256/HS256 keys chosen by the token's kid); "
                   "re-read on SIGHUP, so keys rotate without a restart")
        ->group(security);
    cli.add_option("--revoked-file", out.security.revoked_file,
                   "Revoked credentials, one per line: 'jti <id>', 'client <id>' or 'user <name>'; "
                   "re-read on SIGHUP, when matching clients are closed (4403)")
        ->group(security);
    cli.add_option("--device-keys", out.security.device_keys,
                   "Per-device secrets ('<device id> <secret> [required|optional]' lines): those "
                   "devices sign their frames with HMAC-SHA256 (docs/protocol.md, Signed frames)")
        ->group(security);
    cli.add_option("--replay-window", replay_window_s,
                   "Seconds a signed device frame's ts may differ from the bridge's clock; nonces "
                   "are remembered this long")
        ->check(CLI::Range(1.0, 3600.0))
        ->group(security);
    cli.add_option("--token-expiry-warning", token_warning_s,
                   "Seconds before a client's JWT expires that it is sent token_expiring (then "
                   "closed with 4401 at expiry unless it sends a new token with refresh)")
        ->check(CLI::Range(0.0, 86400.0))
        ->group(security);
    cli.add_flag("--allow-anonymous", out.security.allow_anonymous,
                 "Admit clients without credentials even when a credential source is configured")
        ->group(security);
    cli.add_option("--auth-timeout", auth_timeout_s,
                   "Seconds a client has to authenticate when credentials are required (then 4401)")
        ->check(CLI::Range(0.1, 3600.0))
        ->group(security);
    cli.add_option("--auth-failures-per-minute", out.engine.auth.failures_per_minute,
                   "Failed authentications allowed per remote address and minute (then 4429)")
        ->check(CLI::PositiveNumber)
        ->group(security);
    cli.add_option("--auth-failures-per-user", out.engine.auth.failures_per_user_per_minute,
                   "Failed password checks allowed per user and minute, from any address; beyond "
                   "them the password is not checked (4429), except from addresses the user "
                   "authenticated from before")
        ->check(CLI::PositiveNumber)
        ->group(security);
    cli.add_option("--audit-log", out.audit_log,
                   "Append JSON lines: authentications, refusals, publishes to control topics")
        ->group(security);
    cli.add_option(
           "--audit-topic", out.engine.publishing.audit_topics,
           "Also audit publishes to this filter (repeatable; devices' control topics always are)")
        ->expected(0, CLI::detail::expected_max_vector_size)
        ->group(security);
    cli.add_option("--tls-cert", out.server.tls.cert_file,
                   "PEM certificate chain: serve wss:// (TLS 1.2+)")
        ->group(security);
    cli.add_option("--tls-key", out.server.tls.key_file, "PEM private key of --tls-cert")
        ->group(security);
    cli.add_option(
           "--tls-ca", out.server.tls.ca_file,
           "PEM CA for client certificates; a verified certificate's CN identifies the client")
        ->group(security);
    cli.add_option(
           "--allowed-origins", out.server.allowed_origins,
           "Origins allowed to open WebSockets (comma separated; others get 403). Default: any")
        ->delimiter(',')
        ->expected(0, CLI::detail::expected_max_vector_size)
        ->group(security);

    auto* limits = "Limits";
    cli.add_option("--max-connections", out.server.max_connections,
                   "Concurrent WebSocket connections (0: no limit; beyond it, HTTP 503)")
        ->group(limits);
    cli.add_option("--max-pending-connections", out.server.admission.max_pending,
                   "Sockets not yet upgraded to WebSocket (handshakes, HTTP requests); beyond it, "
                   "new sockets are closed at once (0: no limit)")
        ->group(limits);
    cli.add_option("--max-connections-per-ip", out.server.admission.max_per_address,
                   "Sockets from one address, upgraded or not (0: no limit); beyond it, closed "
                   "at once or HTTP 429. Behind --trusted-proxy, the client it names counts")
        ->group(limits);
    cli.add_option("--ipv6-prefix", out.server.admission.ipv6_prefix,
                   "IPv6 addresses count as one address per prefix of this many bits")
        ->check(CLI::Range(1u, 128u))
        ->group(limits);
    cli.add_option("--handshake-rate", out.server.admission.handshakes_per_second,
                   "WebSocket handshakes per second from one address (0: no limit); beyond it, "
                   "HTTP 429")
        ->check(CLI::NonNegativeNumber)
        ->group(limits);
    cli.add_option("--handshake-burst", out.server.admission.handshake_burst,
                   "Handshakes one address may open at once before --handshake-rate applies "
                   "(0: twice the rate)")
        ->check(CLI::NonNegativeNumber)
        ->group(limits);
    cli.add_option("--handshake-timeout", handshake_timeout_s,
                   "Seconds a new socket has, from its accept, to complete its TLS handshake "
                   "and its HTTP request or upgrade")
        ->check(CLI::Range(0.1, 300.0))
        ->group(limits);
    cli.add_option("--max-publish-rate", out.engine.publishing.rate,
                   "Publishes per second per client (0: no limit; beyond it, rate_limited)")
        ->check(CLI::NonNegativeNumber)
        ->group(limits);
    cli.add_option("--publish-burst", out.engine.publishing.burst,
                   "Publishes a client may send at once before the rate applies (0: max(1, rate))")
        ->check(CLI::NonNegativeNumber)
        ->group(limits);
    cli.add_option("--max-topic-bytes", out.engine.topic_limits.max_bytes,
                   "Longest topic or filter")
        ->check(CLI::Range(std::size_t{1}, std::size_t{65535}))
        ->group(limits);
    cli.add_option("--max-topic-levels", out.engine.topic_limits.max_levels,
                   "Most levels in a topic or filter")
        ->check(CLI::Range(std::size_t{1}, std::size_t{1024}))
        ->group(limits);
    cli.add_option("--max-json-depth", out.engine.decode.max_depth,
                   "Deepest JSON nesting accepted in a frame")
        ->check(CLI::Range(std::size_t{2}, std::size_t{256}))
        ->group(limits);
    cli.add_option("--max-batch", out.engine.decode.max_batch,
                   "Most publishes in one {\"type\":\"batch\"} frame (more: too_large)")
        ->check(CLI::Range(std::size_t{1}, std::size_t{10000}))
        ->group(limits);

    auto* liveness = "Liveness";
    cli.add_option("--ping-interval", ping_interval_s,
                   "Seconds of silence after which a client is pinged")
        ->check(CLI::Range(0.05, 3600.0))
        ->group(liveness);
    cli.add_option("--idle-timeout", idle_timeout_s,
                   "Seconds without any frame or pong after which a client is closed (4001)")
        ->check(CLI::Range(0.1, 86400.0))
        ->group(liveness);
    cli.add_option("--max-queued-bytes", out.engine.flow.max_queued_bytes,
                   "Outgoing budget per client: bytes queued for it before its QoS 0 deliveries "
                   "are conflated (newest per topic)")
        ->check(CLI::Range(std::size_t{1024}, std::size_t{1} << 30))
        ->group(liveness);
    cli.add_option("--slow-consumer-timeout", slow_consumer_timeout_s,
                   "Seconds a client may stay over --max-queued-bytes with anything but "
                   "conflatable QoS 0 messages waiting before it is closed (4008)")
        ->check(CLI::Range(0.1, 86400.0))
        ->group(liveness);
    cli.add_option("--max-backlog-bytes", out.engine.flow.max_backlog_bytes,
                   "QoS 1/2 deliveries waiting for one client beyond its in-flight window; over "
                   "it a client is closed (4008) and a dropped session sheds the oldest")
        ->check(CLI::Range(std::size_t{1024}, std::size_t{1} << 34))
        ->group(liveness);

    auto* ops = "Operations";
    cli.add_option("--web-root", out.web_root,
                   "Serve the static files of this directory on the WebSocket port (e.g. web/: "
                   "the dashboard at /dashboard/, the client SDK at /client/mqttws.js)")
        ->group(ops);
    cli.add_option("--server-header", out.server.server_header,
                   "The Server header of every HTTP answer (no version by default)")
        ->group(ops);
    cli.add_option("--log-level", log_level_name, "debug, info, warn or error")
        ->check(CLI::IsMember({"debug", "info", "warn", "error"}))
        ->group(ops);
    cli.add_option("--log-format", log_format_name, "text or json (one JSON object per line)")
        ->check(CLI::IsMember({"text", "json"}))
        ->group(ops);
    cli.add_flag("--dump-config", dump_config,
                 "Print a config file with every option and its current value, then exit")
        ->configurable(false)
        ->group(ops);

    try {
        cli.parse(argc, argv);
    } catch (const CLI::ParseError& e) {
        return cli.exit(e);
    }
    if (dump_config) {
        std::cout << cli.config_to_str(true, true);
        return 0;
    }

    if (out.server.tls.cert_file.empty() != out.server.tls.key_file.empty()) {
        std::cerr << "--tls-cert and --tls-key go together\n";
        return 2;
    }
    if (!out.server.tls.ca_file.empty() && out.server.tls.cert_file.empty()) {
        std::cerr << "--tls-ca needs --tls-cert and --tls-key\n";
        return 2;
    }
    out.security.client_certificates = !out.server.tls.ca_file.empty();
    if (out.threads == 0) {
        // With fewer than 4 cores the I/O threads would share them with the engine's thread;
        // fan-out measured slower that way (docs/benchmarks.md, "Threads").
        const unsigned cores = std::thread::hardware_concurrency();
        out.threads = cores >= 4 ? cores - 1 : 1;
    }
    if (out.engine_shards && mqtt_version != 5) {
        std::cerr << "--engine-shards needs --mqtt-version 5\n";
        return 2;
    }
    const auto ms = [](double seconds) {
        return static_cast<std::int64_t>(seconds * 1000.0 + 0.5);
    };
    out.engine.auth.auth_timeout_ms = ms(auth_timeout_s);
    out.engine.flow.ping_interval_ms = ms(ping_interval_s);
    out.engine.flow.idle_timeout_ms = ms(idle_timeout_s);
    out.engine.flow.slow_consumer_timeout_ms = ms(slow_consumer_timeout_s);
    out.server.handshake_timeout_ms = ms(handshake_timeout_s);
    out.engine.auth.token_expiry_warning_ms = ms(token_warning_s);
    out.engine.auth.replay_window_ms = ms(replay_window_s);
    out.engine.broker.mqtt_version = mqtt_version;
    out.upstream.reconnect_max = std::chrono::milliseconds(reconnect_max_ms);
    out.upstream.session_expiry = std::chrono::seconds(session_expiry_s);
    out.engine.decode.max_payload_bytes = out.server.max_frame_bytes;
    out.engine.auth.ipv6_prefix = out.server.admission.ipv6_prefix;
    out.engine.devices.idempotency_window_ms =
        static_cast<std::int64_t>(idempotency_window_h * 3600000.0);
    // The bridge's name in presence, status and response topics is its MQTT client id; its MQTT
    // will marks it lost on its status topic.
    out.engine.devices.bridge_id = out.upstream.client_id;
    if (!out.engine.devices.bridge_status_topic.empty()) {
        out.upstream.will_topic =
            fill_topic(out.engine.devices.bridge_status_topic, "", out.upstream.client_id);
        std::string will = R"({"online":false,"reason":"bridge-lost","bridge":)";
        append_json_string(will, out.upstream.client_id);
        will += '}';
        out.upstream.will_payload = std::move(will);
    }
    log_level level = log_level::info;
    logging::parse_level(log_level_name, level);
    logging::configure(level,
                       log_format_name == "json" ? logging::format::json : logging::format::text);
    return std::nullopt;
}

}  // namespace mqttws
