// Decoding of the device and command frames (requests.hpp): an auth frame's `will`, `command`,
// `command_result` and `command_progress`.
#include <algorithm>

#include "core/json_fields.hpp"

namespace mqttws::json_fields {
namespace {

constexpr std::size_t max_command_targets = 1000;
constexpr std::size_t max_name_bytes = 128;
constexpr std::size_t max_idempotency_key_bytes = 256;
constexpr std::int64_t max_command_ms = 24LL * 3600 * 1000;  // a day

}  // namespace

std::optional<field_error> read_will(const value& obj, const decode_limits& limits,
                                     std::optional<last_will>& out) {
    const value* v = find(obj, "will");
    if (v == nullptr) return std::nullopt;
    if (!v->IsObject()) {
        return field_error{errc::bad_request,
                           "'will' must be {\"topic\":…,\"payload\":…,\"qos\":…,\"retain\":…,"
                           "\"delayMs\":…}"};
    }
    last_will will;
    const value* topic = find(*v, "topic");
    if (topic == nullptr || !topic->IsString() || topic->GetStringLength() == 0) {
        return field_error{errc::bad_request,
                           "the will's 'topic' is required and must be a string"};
    }
    will.topic.assign(topic->GetString(), topic->GetStringLength());
    if (auto e = read_payload(*v, limits, will.payload)) return e;
    if (auto e = read_qos(*v, will.qos)) return e;
    if (auto e = read_bool(*v, "retain", will.retain)) return e;
    if (auto e = read_int(*v, "delayMs", 0, max_command_ms, will.delay_ms)) return e;
    out = std::move(will);
    return std::nullopt;
}

std::variant<client_request, field_error> decode_command(const value& obj, msg_id id,
                                                         const decode_limits& limits) {
    command_request r;
    // The command's own id is `id` (the lifecycle's key); `msgid`, when given, is the same.
    if (const value* v = find(obj, "id")) {
        if (v->IsString() && v->GetStringLength() > 0 &&
            v->GetStringLength() <= limits.max_msgid_bytes && is_valid_utf8(view(*v))) {
            append_json_string(r.id.json, view(*v));
        } else if (v->IsUint64()) {
            r.id.json = compact_json(*v);
        } else {
            return field_error{errc::bad_request, "a command's 'id' must be a string of 1 to " +
                                                      std::to_string(limits.max_msgid_bytes) +
                                                      " bytes or an integer"};
        }
    } else if (!id.empty()) {
        r.id = std::move(id);
    } else {
        return field_error{errc::bad_request,
                           "a command needs an 'id' (every command_status names it)"};
    }
    const value* one = find(obj, "target");
    const value* many = find(obj, "targets");
    if ((one == nullptr) == (many == nullptr)) {
        return field_error{errc::bad_request,
                           "give either 'target' (a device id) or 'targets' (an array of them)"};
    }
    const auto add_target = [&](const value& t) -> std::optional<field_error> {
        if (!t.IsString() || !is_valid_client_id(view(t))) {
            return field_error{errc::bad_request,
                               "a target is a device id: 1 to 128 characters without '/', '+', "
                               "'#' or control characters"};
        }
        r.targets.emplace_back(t.GetString(), t.GetStringLength());
        return std::nullopt;
    };
    if (one != nullptr) {
        if (auto e = add_target(*one)) return *e;
    } else {
        if (!many->IsArray() || many->Empty()) {
            return field_error{errc::bad_request, "'targets' must be a non-empty array"};
        }
        if (many->Size() > max_command_targets) {
            return field_error{
                errc::too_large,
                "a command has at most " + std::to_string(max_command_targets) + " targets"};
        }
        for (const auto& t : many->GetArray()) {
            if (auto e = add_target(t)) return *e;
        }
        std::vector<std::string> sorted = r.targets;
        std::sort(sorted.begin(), sorted.end());
        if (std::adjacent_find(sorted.begin(), sorted.end()) != sorted.end()) {
            return field_error{errc::bad_request, "'targets' names a device twice"};
        }
    }
    const value* name = find(obj, "name");
    if (name == nullptr || !name->IsString() || name->GetStringLength() == 0 ||
        name->GetStringLength() > max_name_bytes) {
        return field_error{errc::bad_request, "'name' is required: a string of 1 to " +
                                                  std::to_string(max_name_bytes) + " bytes"};
    }
    r.name.assign(name->GetString(), name->GetStringLength());
    if (const value* params = find(obj, "params")) {
        r.params_json = compact_json(*params);
        if (r.params_json.size() > limits.max_payload_bytes) {
            return field_error{
                errc::too_large,
                "'params' is over " + std::to_string(limits.max_payload_bytes) + " bytes"};
        }
    }
    if (auto e = read_int(obj, "timeoutMs", 100, max_command_ms, r.timeout_ms)) return *e;
    if (auto e = read_int(obj, "ttlMs", 0, max_command_ms, r.ttl_ms)) return *e;
    if (auto e = read_bool(obj, "queue", r.queue)) return *e;
    if (auto e = read_string(obj, "idempotencyKey", r.idempotency_key)) return *e;
    if (r.idempotency_key.size() > max_idempotency_key_bytes) {
        return field_error{
            errc::bad_request,
            "'idempotencyKey' is over " + std::to_string(max_idempotency_key_bytes) + " bytes"};
    }
    return client_request{std::move(r)};
}

std::variant<client_request, field_error> decode_command_result(const value& obj, msg_id id,
                                                                bool progress) {
    command_result_request r;
    r.msgid = std::move(id);
    const value* cid = find(obj, "id");
    if (cid == nullptr || !cid->IsString() || cid->GetStringLength() == 0 ||
        cid->GetStringLength() > 256) {
        return field_error{errc::bad_request,
                           "'id' is required: the id of the command frame this answers"};
    }
    r.id.assign(cid->GetString(), cid->GetStringLength());
    if (progress) {
        r.status = command_result_request::outcome::in_progress;
        if (const value* p = find(obj, "progress")) r.result_json = compact_json(*p);
        return client_request{std::move(r)};
    }
    const value* status = find(obj, "status");
    const std::string_view s = status != nullptr && status->IsString() ? view(*status) : "";
    if (s == "succeeded") {
        r.status = command_result_request::outcome::succeeded;
    } else if (s == "failed") {
        r.status = command_result_request::outcome::failed;
    } else if (s == "rejected") {
        r.status = command_result_request::outcome::rejected;
    } else {
        return field_error{errc::bad_request,
                           "'status' must be \"succeeded\", \"failed\" or \"rejected\""};
    }
    if (const value* result = find(obj, "result")) r.result_json = compact_json(*result);
    if (auto e = read_string(obj, "reason", r.reason)) return *e;
    if (r.reason.size() > 1024) return field_error{errc::too_large, "'reason' is over 1024 bytes"};
    return client_request{std::move(r)};
}

}  // namespace mqttws::json_fields
