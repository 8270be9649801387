// Helpers shared by the parsers of line-oriented files (the ACL file, the password file): a
// parse error that names its line, and splitting text into trimmed lines.
//
// The parsers take the file's text as a string; reading the file is the app's job.
// Thread safety: pure functions and plain data; safe from any thread.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace mqttws {

// One problem in a configuration file. `line` is 1-based.
struct line_error {
    std::size_t line = 0;
    std::string message;  // one sentence, without the line number

    std::string to_string() const { return "line " + std::to_string(line) + ": " + message; }
};

namespace config_text {

constexpr bool is_blank(char c) noexcept {
    return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\f' || c == '\v';
}

constexpr std::string_view trim(std::string_view s) noexcept {
    while (!s.empty() && is_blank(s.front()))
        s.remove_prefix(1);
    while (!s.empty() && is_blank(s.back()))
        s.remove_suffix(1);
    return s;
}

// Calls visit(line_number, line) for every line of `text` ('\n' or "\r\n" endings; a UTF-8
// byte order mark at the start is skipped). The line is passed untrimmed, without its ending.
template <class Visit>
void for_each_line(std::string_view text, Visit&& visit) {
    constexpr std::string_view bom = "\xEF\xBB\xBF";
    if (text.substr(0, bom.size()) == bom) text.remove_prefix(bom.size());
    std::size_t number = 0;
    while (!text.empty()) {
        ++number;
        const std::size_t end = text.find('\n');
        std::string_view line = text.substr(0, end);
        if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
        visit(number, line);
        if (end == std::string_view::npos) break;
        text.remove_prefix(end + 1);
    }
}

// Splits off the first word of `s` (which must be trimmed); `rest` gets the remainder, trimmed.
inline std::string_view first_word(std::string_view s, std::string_view& rest) noexcept {
    std::size_t i = 0;
    while (i < s.size() && !is_blank(s[i]))
        ++i;
    rest = trim(s.substr(i));
    return s.substr(0, i);
}

}  // namespace config_text
}  // namespace mqttws
