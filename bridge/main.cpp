// mqttws-bridge: parse options, run the app. The one place that catches everything.
#include <exception>

#include "io/app.hpp"
#include "io/log.hpp"
#include "options.hpp"

int main(int argc, char** argv) {
    mqttws::app_config config;
    config.version = MQTTWS_VERSION;
    if (auto exit_code = mqttws::parse_options(argc, argv, config)) return *exit_code;
    try {
        if (!config.security.any_credentials()) {
            mqttws::logging::write(
                mqttws::log_level::warn,
                "no client authentication is configured: every client is accepted");
        } else if (config.security.allow_anonymous) {
            mqttws::logging::write(mqttws::log_level::warn,
                                   "--allow-anonymous: clients without credentials are accepted");
        }
        mqttws::app bridge(std::move(config));
        return bridge.run();
    } catch (const std::exception& e) {
        mqttws::logging::write(mqttws::log_level::error, "fatal", {{"error", e.what()}});
        return 1;
    }
}
