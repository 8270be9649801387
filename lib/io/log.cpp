#include "io/log.hpp"

#include <atomic>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <mutex>

#include "io/json_out.hpp"

namespace mqttws::logging {
namespace {

std::atomic<int> min_level{static_cast<int>(log_level::info)};
std::atomic<format> line_format{format::text};
std::mutex write_mutex;

std::string_view level_name(log_level level) {
    switch (level) {
        case log_level::debug:
            return "debug";
        case log_level::info:
            return "info";
        case log_level::warn:
            return "warn";
        case log_level::error:
            return "error";
    }
    return "info";
}

std::string utc_now() {
    const auto now = std::chrono::system_clock::now();
    const auto ms =
        std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count() %
        1000;
    const std::time_t t = std::chrono::system_clock::to_time_t(now);
    std::tm tm{};
    gmtime_r(&t, &tm);
    char buf[96];
    std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
                  tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                  static_cast<int>(ms));
    return buf;
}

}  // namespace

void configure(log_level level, format f) {
    min_level = static_cast<int>(level);
    line_format = f;
}

bool enabled(log_level level) {
    return static_cast<int>(level) >= min_level.load();
}

void write(log_level level, std::string_view message, std::initializer_list<field> fields) {
    if (!enabled(level)) return;
    std::string line;
    line.reserve(128);
    if (line_format == format::json) {
        json_out out;
        out.field("ts", utc_now()).field("level", level_name(level)).field("msg", message);
        for (const auto& [key, value] : fields)
            out.field(key, value);
        line = out.line();
    } else {
        line += utc_now();
        line += ' ';
        std::string name(level_name(level));
        for (auto& c : name)
            c = static_cast<char>(c - 'a' + 'A');
        name.resize(5, ' ');
        line += name;
        line += ' ';
        line += message;
        for (const auto& [key, value] : fields) {
            line += ' ';
            line += key;
            line += '=';
            line += value;
        }
        line += '\n';
    }
    std::lock_guard<std::mutex> lock(write_mutex);
    std::fwrite(line.data(), 1, line.size(), stderr);
}

bool parse_level(std::string_view text, log_level& out) {
    if (text == "debug")
        out = log_level::debug;
    else if (text == "info")
        out = log_level::info;
    else if (text == "warn" || text == "warning")
        out = log_level::warn;
    else if (text == "error")
        out = log_level::error;
    else
        return false;
    return true;
}

}  // namespace mqttws::logging
