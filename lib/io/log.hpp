// Process-wide logging to stderr, as text lines or JSON lines (--log-format).
//
// Text: `2026-11-27T05:00:00.123Z INFO  client open id=3 remote=127.0.0.1:5555`.
// JSON: `{"ts":"2026-11-27T05:00:00.123Z","level":"info","msg":"client open","id":"3",...}`.
// Thread safety: all functions may be called from any thread (a mutex orders the lines).
#pragma once

#include <initializer_list>
#include <string>
#include <string_view>
#include <utility>

#include "core/actions.hpp"

namespace mqttws::logging {

enum class format { text, json };

using field = std::pair<std::string_view, std::string>;

void configure(log_level min_level, format f);
bool enabled(log_level level);
void write(log_level level, std::string_view message, std::initializer_list<field> fields = {});

// "debug" | "info" | "warn" | "error" → level; false when unknown.
bool parse_level(std::string_view text, log_level& out);

}  // namespace mqttws::logging
