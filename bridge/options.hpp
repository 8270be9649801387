// Command line and config file → app_config. Every flag has a config-file twin (CLI11 `--config`,
// TOML/INI syntax: `port = 8080`), and `--dump-config` prints a complete file with the defaults.
#pragma once

#include <optional>

#include "io/app.hpp"

namespace mqttws {

// Parses argv into `out`. Returns an exit code when the process should stop right away (after
// --help, --version, --dump-config, or a usage error), nullopt when the bridge should run.
std::optional<int> parse_options(int argc, char** argv, app_config& out);

}  // namespace mqttws
