// Error codes shared by the wire protocol and the code, and WebSocket close codes.
//
// Two kinds of failure are kept apart (as in Centrifuge): an `errc` answers one request with an
// `error` or `ack` frame and the connection stays open; a `close_code` ends the connection.
// Thread safety: constants and pure functions only; safe from any thread.
#pragma once

#include <cstdint>
#include <string_view>
#include <system_error>

namespace mqttws {

// Errors a request can fail with. `wire_name()` is the `code` string clients see.
enum class errc {
    bad_request = 1,    // malformed frame, wrong field type, invalid topic or filter
    forbidden,          // authenticated, but the ACL (or the broker) refuses this
    unsupported,        // well-formed, but not something this bridge does
    too_large,          // payload, topic, frame or a count over a configured limit
    not_authenticated,  // request before a successful `auth`
    unavailable,        // the broker is unreachable and the request cannot be buffered
    rate_limited,       // over the client's publish rate
    timeout,            // the broker did not confirm in time
    internal,           // a bug or an unexpected broker answer; logged
    bad_signature,      // a device's frame signature is missing or does not verify
    replayed,           // a signed frame outside the replay window, or with a nonce seen before
};

const std::error_category& error_category() noexcept;
std::error_code make_error_code(errc e) noexcept;
std::string_view wire_name(errc e) noexcept;

// WebSocket close codes the bridge sends. 1xxx are RFC 6455; 4xxx are ours (see protocol.md).
enum class close_code : std::uint16_t {
    normal = 1000,
    going_away = 1001,          // bridge shutting down
    protocol_error = 1002,      // frame violates the protocol in a way that cannot be answered
    unsupported_data = 1003,    // e.g. a binary frame where none is accepted
    invalid_payload = 1007,     // text frame that is not UTF-8
    policy_violation = 1008,    // generic refusal
    message_too_big = 1009,     // frame over --max-frame-bytes
    internal_error = 1011,      // the bridge failed
    try_again_later = 1013,     // over --max-connections
    heartbeat_timeout = 4001,   // no frame or pong within --idle-timeout
    slow_consumer = 4008,       // outgoing budget exceeded for too long
    session_taken_over = 4009,  // another connection resumed this session
    auth_timeout = 4401,        // no auth within --auth-timeout
    token_expired = 4401,       // the token expired (no refresh); the session can be resumed
    auth_failed = 4403,         // credentials refused
    auth_rate_limited = 4429,   // too many failed attempts from this address
};

}  // namespace mqttws

template <>
struct std::is_error_code_enum<mqttws::errc> : std::true_type {};
