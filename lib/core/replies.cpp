#include "core/replies.hpp"

#include "core/text.hpp"

namespace mqttws {
namespace {

void append_msgid(std::string& out, const msg_id& id) {
    if (id.empty()) return;
    out += ",\"msgid\":";
    out += id.json;
}

}  // namespace

std::string encode_auth_response(std::string_view client_id, std::string_view session, bool resumed,
                                 bool session_present, std::int64_t timestamp_ms, const msg_id& id,
                                 std::int64_t ping_interval_ms,
                                 std::optional<std::uint64_t> last_seq) {
    std::string out = R"({"type":"auth_response","status":"success","clientId":)";
    append_json_string(out, client_id);
    if (!session.empty()) {
        out += ",\"session\":";
        append_json_string(out, session);
        out += resumed ? ",\"resumed\":true" : ",\"resumed\":false";
        out += session_present ? ",\"sessionPresent\":true" : ",\"sessionPresent\":false";
        if (last_seq) {
            out += ",\"lastSeq\":";
            append_uint(out, *last_seq);
        }
    }
    out += ",\"timestamp\":";
    append_int(out, timestamp_ms);
    if (ping_interval_ms > 0) {
        out += ",\"pingInterval\":";
        append_int(out, ping_interval_ms);
    }
    append_msgid(out, id);
    out += '}';
    return out;
}

std::string encode_suback(const msg_id& id, std::string_view filter, int granted_qos) {
    std::string out = R"({"type":"suback")";
    append_msgid(out, id);
    out += ",\"topic\":";
    append_json_string(out, filter);
    out += ",\"qos\":";
    append_int(out, granted_qos);
    out += '}';
    return out;
}

std::string encode_unsuback(const msg_id& id, std::string_view filter) {
    std::string out = R"({"type":"unsuback")";
    append_msgid(out, id);
    out += ",\"topic\":";
    append_json_string(out, filter);
    out += '}';
    return out;
}

std::string encode_ack_ok(const msg_id& id) {
    std::string out = R"({"type":"ack")";
    append_msgid(out, id);
    out += R"(,"status":"ok"})";
    return out;
}

std::string encode_ack_error(const msg_id& id, errc code, std::string_view message) {
    std::string out = R"({"type":"ack")";
    append_msgid(out, id);
    out += R"(,"status":"error","code":)";
    append_json_string(out, wire_name(code));
    out += ",\"message\":";
    append_json_string(out, message);
    out += '}';
    return out;
}

std::string encode_error(errc code, std::string_view message, const msg_id& id,
                         std::string_view topic) {
    std::string out = R"({"type":"error","code":)";
    append_json_string(out, wire_name(code));
    out += ",\"message\":";
    append_json_string(out, message);
    append_msgid(out, id);
    if (!topic.empty()) {
        out += ",\"topic\":";
        append_json_string(out, topic);
    }
    out += '}';
    return out;
}

std::string encode_pong(std::int64_t timestamp_ms, const msg_id& id) {
    std::string out = R"({"type":"pong","timestamp":)";
    append_int(out, timestamp_ms);
    append_msgid(out, id);
    out += '}';
    return out;
}

std::string encode_upstream_status(bool up, std::int64_t timestamp_ms) {
    std::string out = R"({"type":"status","upstream":)";
    out += up ? "\"up\"" : "\"down\"";
    out += ",\"timestamp\":";
    append_int(out, timestamp_ms);
    out += '}';
    return out;
}

std::string encode_token_expiring(std::int64_t in_ms, std::int64_t expires_at_ms) {
    std::string out = R"({"type":"token_expiring","in":)";
    append_int(out, in_ms);
    out += ",\"expiresAt\":";
    append_int(out, expires_at_ms);
    out += '}';
    return out;
}

std::string encode_refresh_response(std::optional<std::int64_t> expires_at_ms, const msg_id& id) {
    std::string out = R"({"type":"refresh_response","status":"success")";
    if (expires_at_ms) {
        out += ",\"expiresAt\":";
        append_int(out, *expires_at_ms);
    }
    append_msgid(out, id);
    out += '}';
    return out;
}

std::string encode_app_ping(std::int64_t timestamp_ms) {
    std::string out = R"({"type":"ping","timestamp":)";
    append_int(out, timestamp_ms);
    out += '}';
    return out;
}

std::string encode_command_status(const msg_id& id, std::string_view target, std::string_view state,
                                  std::int64_t at_ms, std::string_view result_json,
                                  std::string_view reason) {
    std::string out = R"({"type":"command_status","id":)";
    out += id.json;
    out += R"(,"target":)";
    append_json_string(out, target);
    out += R"(,"state":)";
    append_json_string(out, state);
    out += R"(,"at":)";
    append_int(out, at_ms);
    if (!result_json.empty()) {
        out += R"(,"result":)";
        out += result_json;
    }
    if (!reason.empty()) {
        out += R"(,"reason":)";
        append_json_string(out, reason);
    }
    out += '}';
    return out;
}

std::string encode_command_summary(const msg_id& id, std::size_t targets,
                                   const std::size_t (&counts)[4], std::int64_t at_ms) {
    static constexpr const char* names[] = {R"(,"succeeded":)", R"(,"failed":)", R"(,"rejected":)",
                                            R"(,"timed_out":)"};
    std::string out = R"({"type":"command_summary","id":)";
    out += id.json;
    out += R"(,"targets":)";
    append_uint(out, targets);
    for (std::size_t i = 0; i < 4; ++i) {
        out += names[i];
        append_uint(out, counts[i]);
    }
    out += R"(,"at":)";
    append_int(out, at_ms);
    out += '}';
    return out;
}

}  // namespace mqttws
