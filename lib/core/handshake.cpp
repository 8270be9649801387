#include "core/handshake.hpp"

#include <cctype>

#include "core/base64.hpp"

namespace mqttws {
namespace {

int hex_digit(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

std::string url_decode(std::string_view s) {
    std::string out;
    for (std::size_t i = 0; i < s.size(); ++i) {
        if (s[i] == '%' && i + 2 < s.size() && hex_digit(s[i + 1]) >= 0 &&
            hex_digit(s[i + 2]) >= 0) {
            out += static_cast<char>(hex_digit(s[i + 1]) * 16 + hex_digit(s[i + 2]));
            i += 2;
        } else {
            out += s[i] == '+' ? ' ' : s[i];
        }
    }
    return out;
}

// `scheme` in lower case, with its trailing space; something must follow it.
bool starts_with_scheme(std::string_view header, std::string_view scheme) {
    if (header.size() <= scheme.size()) return false;
    for (std::size_t i = 0; i < scheme.size(); ++i) {
        if (std::tolower(static_cast<unsigned char>(header[i])) != scheme[i]) return false;
    }
    return true;
}

std::string_view trim_spaces(std::string_view s) {
    while (!s.empty() && s.front() == ' ')
        s.remove_prefix(1);
    while (!s.empty() && s.back() == ' ')
        s.remove_suffix(1);
    return s;
}

}  // namespace

handshake_credentials request_credentials(std::string_view authorization,
                                          std::string_view resource) {
    handshake_credentials c;
    if (starts_with_scheme(authorization, "bearer ")) {
        c.bearer_token = std::string(authorization.substr(7));
        return c;
    }
    if (starts_with_scheme(authorization, "basic ")) {
        const auto decoded = base64::decode(authorization.substr(6));
        const std::size_t colon = decoded ? decoded->find(':') : std::string::npos;
        if (colon != std::string::npos) {
            c.username = decoded->substr(0, colon);
            c.password = decoded->substr(colon + 1);
        }
        return c;
    }
    const std::size_t query = resource.find('?');
    if (query == std::string_view::npos) return c;
    std::string_view rest = resource.substr(query + 1);
    while (!rest.empty()) {
        const std::size_t amp = rest.find('&');
        const std::string_view pair = rest.substr(0, amp);
        if (pair.substr(0, 6) == "token=") {
            c.bearer_token = url_decode(pair.substr(6));
            break;
        }
        if (amp == std::string_view::npos) break;
        rest.remove_prefix(amp + 1);
    }
    return c;
}

std::string forwarded_client(std::string_view x_forwarded_for) {
    const std::size_t comma = x_forwarded_for.rfind(',');
    return std::string(trim_spaces(
        comma == std::string_view::npos ? x_forwarded_for : x_forwarded_for.substr(comma + 1)));
}

std::string address_without_port(std::string_view remote_address) {
    if (!remote_address.empty() && remote_address.front() == '[') {
        const std::size_t close = remote_address.find(']');
        return std::string(remote_address.substr(
            1, close == std::string_view::npos ? std::string_view::npos : close - 1));
    }
    const std::size_t colon = remote_address.find(':');
    if (colon == std::string_view::npos ||
        remote_address.find(':', colon + 1) != std::string_view::npos)
        return std::string(remote_address);
    return std::string(remote_address.substr(0, colon));
}

}  // namespace mqttws
