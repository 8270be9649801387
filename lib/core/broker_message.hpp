// One message from the broker, as the upstream client hands it to the engine (copied off the
// MQTT client's thread).
// Thread safety: a plain value.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace mqttws {

struct broker_message {
    std::string topic;
    std::string payload;
    std::uint8_t qos = 0;
    bool retained = false;
    bool duplicate = false;  // the broker sent it again after a reconnect (MQTT DUP flag)
    std::vector<std::uint32_t> subscription_ids;  // MQTT v5; empty with 3.1.1
    // MQTT v5 request/response properties (empty when absent, and always with 3.1.1).
    std::string response_topic;
    std::string correlation_data;
};

}  // namespace mqttws
