#include "core/presence.hpp"

#include <rapidjson/document.h>

#include "core/broker_hub.hpp"
#include "core/text.hpp"
#include "core/topic.hpp"

namespace mqttws {
namespace {

constexpr const char* presence_file = "presence.jsonl";

std::string_view reason_name(presence_keeper::end_reason why) {
    switch (why) {
        case presence_keeper::end_reason::closed:
            return "closed";
        case presence_keeper::end_reason::timeout:
            return "timeout";
        case presence_keeper::end_reason::revoked:
            return "revoked";
        case presence_keeper::end_reason::bridge_stopped:
            return "bridge-stopped";
    }
    return "closed";
}

void replace_all(std::string& s, std::string_view what, std::string_view with) {
    for (std::size_t at = s.find(what); at != std::string::npos;
         at = s.find(what, at + with.size()))
        s.replace(at, what.size(), with);
}

}  // namespace

std::string fill_topic(std::string_view tmpl, std::string_view id, std::string_view bridge) {
    std::string out(tmpl);
    replace_all(out, "{id}", id);
    replace_all(out, "{bridge}", bridge);
    return out;
}

presence_keeper::presence_keeper(engine_context& ctx, publish_relay& relay)
    : ctx_(ctx), relay_(relay), started_ms_(ctx.env.wall_ms()) {
    const std::string& tmpl = ctx_.config.devices.presence_topic;
    if (tmpl.empty()) return;
    presence_filter_ = fill_topic(tmpl, "+", ctx_.config.devices.bridge_id);
    std::size_t level = 0;
    for (std::size_t at = 0; at < tmpl.size(); ++at) {
        if (tmpl.compare(at, 4, "{id}") == 0) break;
        if (tmpl[at] == '/') ++level;
    }
    id_level_ = level;
}

// ---------------------------------------------------------------- the broker

void presence_keeper::upstream_connected(action_list& out) {
    // `since` is when this run started, whatever broker connection this is: every device that
    // is online through this run came online after it, which is how consumers tell a device's
    // presence from this run from one a crashed run left behind (docs/protocol.md).
    publish_bridge_status(true, started_ms_, {}, out);
    for (const auto& device : left_online_) {
        if (local_.count(device) > 0) continue;  // back already
        out.push_back(state_record{presence_file, "-" + device});
        publish_presence(device, false, "bridge-lost", out);
    }
    left_online_.clear();
}

std::string presence_keeper::presence_of(std::string_view topic) const {
    if (presence_filter_.empty() || !topic::matches(presence_filter_, topic)) return {};
    std::size_t level = 0;
    std::size_t start = 0;
    for (std::size_t at = 0; at <= topic.size(); ++at) {
        if (at == topic.size() || topic[at] == '/') {
            if (level == id_level_) return std::string(topic.substr(start, at - start));
            ++level;
            start = at + 1;
        }
    }
    return {};
}

std::string presence_keeper::heard(const broker_message& m) {
    std::string device = presence_of(m.topic);
    if (device.empty()) return {};
    if (m.payload.empty()) {  // the retained presence was cleared
        heard_.erase(device);
        return {};
    }
    rapidjson::Document doc;
    doc.Parse(m.payload.data(), m.payload.size());
    if (doc.HasParseError() || !doc.IsObject()) return {};
    const auto online = doc.FindMember("online");
    if (online == doc.MemberEnd() || !online->value.IsBool()) return {};
    remember(device, online->value.GetBool());
    return online->value.GetBool() ? device : std::string();
}

void presence_keeper::remember(const std::string& device, bool online) {
    const auto known = heard_.find(device);
    if (known != heard_.end()) {
        known->second = online;
    } else if (heard_.size() < ctx_.config.devices.known_devices) {
        heard_.emplace(device, online);
    }
}

std::optional<bool> presence_keeper::online(const std::string& device) const {
    if (local_.count(device) > 0 || peers_.count(device) > 0) return true;
    const auto known = heard_.find(device);
    if (known != heard_.end()) return known->second;
    return std::nullopt;
}

void presence_keeper::peer_presence(const std::string& device, bool online) {
    if (online) {
        peers_.insert(device);
    } else {
        peers_.erase(device);
    }
    remember(device, online);  // as for a device of this shard: before the broker echoes it
}

// ---------------------------------------------------------------- sessions

void presence_keeper::authenticated(session& s, action_list& out) {
    if (!s.is_device()) return;
    if (++local_[s.client_id()] > 1) return;
    left_online_.erase(s.client_id());
    remember(s.client_id(), true);  // what the bridge says itself, before the broker echoes it
    out.push_back(state_record{presence_file, "+" + s.client_id()});
    if (ctx_.config.behind_hub) out.push_back(device_presence{s.client_id(), true});
    publish_presence(s.client_id(), true, {}, out);
}

void presence_keeper::connection_ended(session& s, bool clean, std::int64_t now) {
    device_state& d = s.device();
    if (clean) {
        d.will.reset();
    } else if (d.will) {
        d.will_due_ms = now + d.will->delay_ms;
    }
}

void presence_keeper::session_ended(session& s, end_reason why, action_list& out) {
    if (why != end_reason::closed && why != end_reason::bridge_stopped && s.device().will)
        publish_will(s, out);
    s.device().will.reset();
    if (!s.is_device()) return;
    const auto it = local_.find(s.client_id());
    if (it == local_.end() || --it->second > 0) return;
    local_.erase(it);
    remember(s.client_id(), false);  // offline from now, not from when the broker echoes it
    // Written down before it is told: whoever saw the presence change may see the bridge
    // crash next, and the next run must not mark the device again.
    out.push_back(state_record{presence_file, "-" + s.client_id()});
    if (ctx_.config.behind_hub) out.push_back(device_presence{s.client_id(), false});
    publish_presence(s.client_id(), false, reason_name(why), out);
}

void presence_keeper::tick(session& s, std::int64_t now, action_list& out) {
    device_state& d = s.device();
    if (s.connection() != 0 || d.will_due_ms == 0 || d.will_due_ms > now) return;
    if (d.will) publish_will(s, out);
    d.will.reset();
    d.will_due_ms = 0;
}

void presence_keeper::shutdown(const std::vector<session*>& sessions, action_list& out) {
    for (session* s : sessions) {
        if (s->authenticated()) session_ended(*s, end_reason::bridge_stopped, out);
    }
    publish_bridge_status(false, ctx_.env.wall_ms(), "stopped", out);
}

void presence_keeper::restore(const std::vector<std::string>& lines, action_list& out) {
    std::unordered_set<std::string> left_online;
    for (const auto& line : lines) {
        if (line.size() < 2) continue;
        if (line[0] == '+') left_online.insert(line.substr(1));
        if (line[0] == '-') left_online.erase(line.substr(1));
    }
    // Engine shards read the same file: shard 0 writes it anew, and each keeps the devices whose
    // sessions it holds (shard_of_device), which it alone writes of from now on.
    const engine_config& config = ctx_.config;
    if (config.shard == 0) {
        state_record compact{presence_file, {}, true};
        for (const auto& device : left_online) {
            compact.text += '+';
            compact.text += device;
            compact.text += '\n';
        }
        out.push_back(std::move(compact));
    }
    for (auto& device : left_online) {
        if (!config.behind_hub || shard_of_device(device, config.shards) == config.shard)
            left_online_.insert(device);
    }
}

// ---------------------------------------------------------------- publishing

void presence_keeper::publish_presence(const std::string& device, bool online,
                                       std::string_view reason, action_list& out) {
    const device_config& config = ctx_.config.devices;
    if (config.presence_topic.empty()) return;
    publish_status(fill_topic(config.presence_topic, device, config.bridge_id), online,
                   ctx_.env.wall_ms(), reason, out);
}

void presence_keeper::publish_bridge_status(bool online, std::int64_t since,
                                            std::string_view reason, action_list& out) {
    const device_config& config = ctx_.config.devices;
    if (config.bridge_status_topic.empty()) return;
    publish_status(fill_topic(config.bridge_status_topic, "", config.bridge_id), online, since,
                   reason, out);
}

void presence_keeper::publish_status(std::string topic, bool online, std::int64_t since,
                                     std::string_view reason, action_list& out) {
    std::string payload = online ? R"({"online":true,"since":)" : R"({"online":false,"since":)";
    append_int(payload, since);
    if (!reason.empty()) {
        payload += R"(,"reason":)";
        append_json_string(payload, reason);
    }
    payload += R"(,"bridge":)";
    append_json_string(payload, ctx_.config.devices.bridge_id);
    payload += '}';
    relay_.publish_for_bridge(
        publish_upstream{0, std::move(topic), std::move(payload), 1, true, {}, {}}, 0, out);
}

void presence_keeper::publish_will(session& s, action_list& out) {
    const last_will& will = *s.device().will;
    // The rules may have changed since the client declared it.
    const acl_decision allowed =
        ctx_.security().rules.check_publish(s.client_id(), s.username(), will.topic, s.grant());
    if (!allowed.allowed) {
        ++ctx_.stats.denied;
        ctx_.audit(s, "denied", will.topic, "last will: " + allowed.reason, out);
        return;
    }
    ++ctx_.stats.wills_published;
    ctx_.audit(s, "will", will.topic, {}, out);
    relay_.publish_for_bridge(
        publish_upstream{0, will.topic, will.payload, will.qos, will.retain, {}, {}}, 0, out);
}

}  // namespace mqttws
