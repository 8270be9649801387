// libFuzzer target for what any MQTT client can make the bridge parse through the broker: a
// device's presence, an answer on the bridge's response topic, and a command on a device's
// control topic (core/presence.cpp, core/commands.cpp).
//
// An engine with a command in flight and a WebSocket device that takes commands is fed the
// input as the payload (and correlation data) of a message on each of those topics. It must not
// crash, and every frame it would send a client must be valid UTF-8 JSON.
#include <rapidjson/document.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <string_view>

#include "../fixed_platform.hpp"
#include "core/engine.hpp"
#include "core/text.hpp"

namespace {

using namespace mqttws;

using test::fixed_platform;

void check_frames(const action_list& out) {
    for (const auto& a : out) {
        const auto* s = std::get_if<send_frame>(&a);
        if (s == nullptr || s->binary) continue;
        const std::string whole = s->head.str() + *s->frame;
        rapidjson::Document doc;
        doc.Parse(whole.data(), whole.size());
        if (doc.HasParseError() || !doc.IsObject() || !is_valid_utf8(whole)) {
            std::fprintf(stderr, "fuzz_devices: invalid frame\n%s\n", whole.c_str());
            std::abort();
        }
    }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::string input(reinterpret_cast<const char*>(data), size);
    fixed_platform env;
    engine e(engine_config{}, env);
    action_list out;
    e.upstream_connected(false, out);
    e.client_opened(1, "127.0.0.1:1", {}, out);
    e.client_text(1, R"({"type":"auth","clientId":"dash"})", out);
    e.client_text(1, R"({"type":"command","id":"c","target":"d1","name":"n","timeoutMs":1000})",
                  out);
    e.client_opened(2, "127.0.0.1:2", {}, out);
    e.client_text(2, R"({"type":"auth","deviceId":"d1","commands":true})", out);
    std::string correlation;
    for (const auto& a : out) {
        if (const auto* p = std::get_if<publish_upstream>(&a))
            if (!p->correlation_data.empty()) correlation = p->correlation_data;
    }
    out.clear();

    for (const char* topic :
         {"devices/d1/presence", "mqttws/mqttws-bridge/responses", "devices/d1/control"}) {
        broker_message m;
        m.topic = topic;
        m.payload = input;
        m.qos = 1;
        m.correlation_data = size % 2 == 0 ? correlation : input.substr(0, 16);
        e.upstream_message(m, out);
        check_frames(out);
        out.clear();
    }
    // And what a device may answer.
    e.client_text(2, input, out);
    env.now += 2000;
    e.tick(out);
    check_frames(out);
    return 0;
}
