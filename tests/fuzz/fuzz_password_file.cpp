// libFuzzer target for the Mosquitto password file parser and verify() (credentials.hpp).
//
// Input: the file text, optionally followed by a NUL byte and "username\npassword". Iterations
// are capped low so that each run stays fast; the parser's handling of the count is what is
// fuzzed, not PBKDF2. Checks: errors name real lines; a parsed file answers every user.
#include <cstdint>
#include <cstdlib>
#include <string_view>
#include <variant>

#include "core/credentials.hpp"

namespace {

void require(bool ok) {
    if (!ok) std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::string_view input(reinterpret_cast<const char*>(data), size);
    const std::size_t nul = input.find('\0');
    const std::string_view text = input.substr(0, nul);
    std::string_view username = "alice";
    std::string_view password = "secret";
    if (nul != std::string_view::npos) {
        const std::string_view rest = input.substr(nul + 1);
        const std::size_t nl = rest.find('\n');
        username = rest.substr(0, nl);
        password = nl == std::string_view::npos ? std::string_view() : rest.substr(nl + 1);
    }

    std::size_t lines = 1;
    for (const char c : text)
        lines += c == '\n' ? 1 : 0;

    mqttws::password_file_limits limits;
    limits.max_iterations = 64;
    auto parsed = mqttws::password_file::parse(text, limits);
    if (auto* errors = std::get_if<std::vector<mqttws::line_error>>(&parsed)) {
        require(!errors->empty());
        for (const auto& e : *errors)
            require(e.line >= 1 && e.line <= lines && !e.message.empty());
        return 0;
    }
    const auto& file = std::get<mqttws::password_file>(parsed);
    require(file.size() <= lines);
    const auto r = file.verify(username, password);
    require(r == mqttws::password_file::result::ok ||
            r == mqttws::password_file::result::wrong_password ||
            r == mqttws::password_file::result::unknown_user);
    // The empty username is never a user (an empty username is a parse error).
    require(file.verify("", password) == mqttws::password_file::result::unknown_user);
    return 0;
}
