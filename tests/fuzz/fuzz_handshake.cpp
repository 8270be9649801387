// libFuzzer target for core/handshake: the Authorization header, the request URL and the
// X-Forwarded-For header of an upgrade request come straight from the network.
// Input: header and URL separated by the first '\n'; all three parsers get the whole input too.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "core/handshake.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::string_view input(reinterpret_cast<const char*>(data), size);
    const std::size_t newline = input.find('\n');
    const std::string_view header = input.substr(0, newline);
    const std::string_view url =
        newline == std::string_view::npos ? std::string_view() : input.substr(newline + 1);

    const auto c = mqttws::request_credentials(header, url);
    // A token or user comes only from what was sent: never longer than the input.
    if (c.bearer_token.size() > size || c.username.size() + c.password.size() > size) std::abort();

    const std::string client = mqttws::forwarded_client(input);
    if (client.size() > size ||
        (!client.empty() && (client.front() == ' ' || client.back() == ' ')))
        std::abort();
    const std::string address = mqttws::address_without_port(input);
    if (address.size() > size) std::abort();
    return 0;
}
