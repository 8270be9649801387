// The bridge's answers and notices to a client (docs/protocol.md, "Bridge → client"), except
// message deliveries (message_body.hpp). Each function returns the frame's JSON text.
// Timestamps are milliseconds since the Unix epoch.
// Thread safety: pure functions.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "core/error.hpp"
#include "core/requests.hpp"

namespace mqttws {

// `session` empty: the client opted out of resuming (no session fields are written).
// `ping_interval_ms` > 0: the client asked for `ping` frames, sent after that much silence.
// `last_seq`: with a session present, the seq of its last delivery so far (`lastSeq`).
std::string encode_auth_response(std::string_view client_id, std::string_view session, bool resumed,
                                 bool session_present, std::int64_t timestamp_ms, const msg_id& id,
                                 std::int64_t ping_interval_ms = 0,
                                 std::optional<std::uint64_t> last_seq = std::nullopt);
std::string encode_suback(const msg_id& id, std::string_view filter, int granted_qos);
std::string encode_unsuback(const msg_id& id, std::string_view filter);
std::string encode_ack_ok(const msg_id& id);
std::string encode_ack_error(const msg_id& id, errc code, std::string_view message);
// `topic` is added when the error is about one topic of a multi-topic request.
std::string encode_error(errc code, std::string_view message, const msg_id& id,
                         std::string_view topic = {});
std::string encode_pong(std::int64_t timestamp_ms, const msg_id& id);
std::string encode_upstream_status(bool up, std::int64_t timestamp_ms);
// {"type":"ping","timestamp":…}: the bridge is alive (clients that asked for heartbeats).
std::string encode_app_ping(std::int64_t timestamp_ms);
// {"type":"token_expiring","in":…,"expiresAt":…}: the client's token expires in `in_ms`.
std::string encode_token_expiring(std::int64_t in_ms, std::int64_t expires_at_ms);
// {"type":"refresh_response","status":"success","expiresAt":…} (no expiresAt: never expires).
std::string encode_refresh_response(std::optional<std::int64_t> expires_at_ms, const msg_id& id);

// {"type":"command_status","id":…,"target":…,"state":…,"at":…[,"result":…][,"reason":…]}
// (`result_json` is JSON text, written as it is).
std::string encode_command_status(const msg_id& id, std::string_view target, std::string_view state,
                                  std::int64_t at_ms, std::string_view result_json,
                                  std::string_view reason);
// {"type":"command_summary","id":…,"targets":N,"succeeded":…,"failed":…,"rejected":…,
// "timed_out":…,"at":…}: counts[] in that order.
std::string encode_command_summary(const msg_id& id, std::size_t targets,
                                   const std::size_t (&counts)[4], std::int64_t at_ms);

}  // namespace mqttws
