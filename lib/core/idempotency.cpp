#include "core/idempotency.hpp"

#include <rapidjson/document.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include "core/text.hpp"

namespace mqttws {
namespace {

constexpr std::string_view state_names[] = {"queued", "delivered", "in_progress", "succeeded",
                                            "failed", "rejected",  "timed_out"};

std::string compact(const rapidjson::Value& v) {
    rapidjson::StringBuffer buffer;
    rapidjson::Writer<rapidjson::StringBuffer> writer(buffer);
    v.Accept(writer);
    return {buffer.GetString(), buffer.GetSize()};
}

}  // namespace

std::string_view name(command_state s) {
    return state_names[static_cast<std::size_t>(s)];
}

std::optional<command_state> command_state_named(std::string_view name) {
    for (std::size_t i = 0; i < std::size(state_names); ++i) {
        if (state_names[i] == name) return static_cast<command_state>(i);
    }
    return std::nullopt;
}

std::string idempotency_store::key_of(std::string_view sender, std::string_view key) {
    std::string out(sender);
    out += '\n';  // cannot occur in a client id or user name
    out += key;
    return out;
}

const remembered_command* idempotency_store::live(const std::string& key,
                                                  std::int64_t now_wall_ms) const {
    const auto it = entries_.find(key);
    if (it == entries_.end() || now_wall_ms - it->second.created_wall_ms > window_ms_)
        return nullptr;
    return &it->second;
}

std::optional<remembered_command> idempotency_store::find(const std::string& key,
                                                          std::int64_t now_wall_ms) const {
    const std::lock_guard<std::mutex> hold(lock_);
    if (const remembered_command* c = live(key, now_wall_ms)) return *c;
    return std::nullopt;
}

std::optional<remembered_command> idempotency_store::find_or_put(const std::string& key,
                                                                 remembered_command command,
                                                                 std::int64_t now_wall_ms) {
    const std::lock_guard<std::mutex> hold(lock_);
    if (const remembered_command* c = live(key, now_wall_ms)) return *c;
    put(key, std::move(command));
    return std::nullopt;
}

std::string idempotency_store::update(const std::string& key, remembered_command command) {
    const std::lock_guard<std::mutex> hold(lock_);
    const auto it = entries_.find(key);
    if (it == entries_.end()) {
        put(key, std::move(command));  // forgotten while it ran (past the count): stored anew
        return line(key, entries_.at(key));
    }
    remembered_command& stored = it->second;
    if (stored.shard != command.shard || stored.number != command.number) return {};
    command.created_wall_ms = stored.created_wall_ms;
    stored = std::move(command);
    return line(key, stored);
}

void idempotency_store::finished(const std::string& key, std::size_t shard, std::uint64_t number) {
    const std::lock_guard<std::mutex> hold(lock_);
    const auto it = entries_.find(key);
    if (it == entries_.end() || it->second.shard != shard || it->second.number != number) return;
    it->second.running = false;
}

void idempotency_store::put(const std::string& key, remembered_command command) {
    const auto existing = entries_.find(key);
    if (existing != entries_.end()) {
        // It had expired, or a later line of the state file: a new time needs a new record.
        if (existing->second.created_wall_ms != command.created_wall_ms)
            order_.emplace_back(command.created_wall_ms, key);
        existing->second = std::move(command);
        return;
    }
    // Past the count the oldest goes, even if it still runs: its next update stores it anew.
    while (!entries_.empty() && entries_.size() >= max_entries_ && !order_.empty()) {
        auto [created, oldest] = std::move(order_.front());
        order_.pop_front();
        const auto it = entries_.find(oldest);
        if (it != entries_.end() && it->second.created_wall_ms == created) entries_.erase(it);
    }
    order_.emplace_back(command.created_wall_ms, key);
    entries_.emplace(key, std::move(command));
}

void idempotency_store::expire(std::int64_t now_wall_ms) {
    const std::lock_guard<std::mutex> hold(lock_);
    while (!order_.empty() && now_wall_ms - order_.front().first > window_ms_) {
        const auto it = entries_.find(order_.front().second);
        if (it != entries_.end() && it->second.created_wall_ms == order_.front().first) {
            // A command still running is kept until it ends, and what was stored after it too
            // (commands end within their timeout).
            if (it->second.running) return;
            entries_.erase(it);
        }
        order_.pop_front();
    }
}

std::size_t idempotency_store::size() const {
    const std::lock_guard<std::mutex> hold(lock_);
    return entries_.size();
}

std::string idempotency_store::line(const std::string& key, const remembered_command& c) const {
    std::string out = R"({"key":)";
    append_json_string(out, key);
    out += R"(,"at":)";
    append_int(out, c.created_wall_ms);
    out += R"(,"name":)";
    append_json_string(out, c.name);
    out += R"(,"targets":[)";
    for (std::size_t i = 0; i < c.targets.size(); ++i) {
        const remembered_target& t = c.targets[i];
        if (i > 0) out += ',';
        out += R"({"device":)";
        append_json_string(out, t.device);
        out += R"(,"state":")";
        out += name(t.state);
        out += '"';
        if (!t.result_json.empty()) {
            out += R"(,"result":)";
            out += t.result_json;
        }
        if (!t.reason.empty()) {
            out += R"(,"reason":)";
            append_json_string(out, t.reason);
        }
        out += '}';
    }
    out += "]}";
    return out;
}

std::string idempotency_store::all_lines() const {
    const std::lock_guard<std::mutex> hold(lock_);
    std::string out;
    for (const auto& [created, key] : order_) {
        const auto it = entries_.find(key);
        if (it == entries_.end() || it->second.created_wall_ms != created) continue;
        out += line(key, it->second);
        out += '\n';
    }
    return out;
}

void idempotency_store::restore(const std::vector<std::string>& lines, std::int64_t now_wall_ms) {
    const std::lock_guard<std::mutex> hold(lock_);
    for (const auto& text : lines) {
        rapidjson::Document doc;
        doc.Parse(text.data(), text.size());
        if (doc.HasParseError() || !doc.IsObject()) continue;
        const auto key = doc.FindMember("key");
        const auto at = doc.FindMember("at");
        const auto command_name = doc.FindMember("name");
        const auto targets = doc.FindMember("targets");
        if (key == doc.MemberEnd() || !key->value.IsString() || at == doc.MemberEnd() ||
            !at->value.IsInt64() || command_name == doc.MemberEnd() ||
            !command_name->value.IsString() || targets == doc.MemberEnd() ||
            !targets->value.IsArray()) {
            continue;
        }
        remembered_command c;
        c.name = command_name->value.GetString();
        c.created_wall_ms = at->value.GetInt64();
        if (now_wall_ms - c.created_wall_ms > window_ms_) continue;
        bool valid = true;
        for (const auto& t : targets->value.GetArray()) {
            if (!t.IsObject() || !t.HasMember("device") || !t["device"].IsString() ||
                !t.HasMember("state") || !t["state"].IsString()) {
                valid = false;
                break;
            }
            const auto state = command_state_named(t["state"].GetString());
            if (!state) {
                valid = false;
                break;
            }
            remembered_target r;
            r.device = t["device"].GetString();
            r.state = *state;
            if (t.HasMember("result")) r.result_json = compact(t["result"]);
            if (t.HasMember("reason") && t["reason"].IsString()) r.reason = t["reason"].GetString();
            if (!is_final(r.state) && r.reason.empty()) {
                // In flight when the previous run stopped: its outcome cannot arrive here now.
                r.reason = "bridge-restarted";
            }
            c.targets.push_back(std::move(r));
        }
        if (valid) put(key->value.GetString(), std::move(c));
    }
}

}  // namespace mqttws
