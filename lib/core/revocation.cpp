#include "core/revocation.hpp"

namespace mqttws {

std::variant<revocation_list, std::vector<line_error>> revocation_list::parse(
    std::string_view text) {
    revocation_list list;
    std::vector<line_error> errors;
    config_text::for_each_line(text, [&](std::size_t number, std::string_view raw) {
        const std::string_view line = config_text::trim(raw);
        if (line.empty() || line.front() == '#') return;
        std::string_view value;
        const std::string_view kind = config_text::first_word(line, value);
        if (value.empty()) {
            errors.push_back({number, "'" + std::string(kind) + "' needs a value"});
            return;
        }
        if (kind == "jti") {
            list.tokens_.emplace(value);
        } else if (kind == "client") {
            list.clients_.emplace(value);
        } else if (kind == "user") {
            list.users_.emplace(value);
        } else {
            errors.push_back(
                {number, "unknown entry '" + std::string(kind) + "' (jti, client or user)"});
        }
    });
    if (!errors.empty()) return errors;
    return list;
}

std::optional<std::string> revocation_list::revokes(
    const std::string& client_id, const std::string& username,
    const std::optional<std::string>& token_id) const {
    if (token_id && tokens_.count(*token_id) > 0) return "token '" + *token_id + "' is revoked";
    if (!client_id.empty() && clients_.count(client_id) > 0)
        return "client '" + client_id + "' is revoked";
    if (!username.empty() && users_.count(username) > 0)
        return "user '" + username + "' is revoked";
    return std::nullopt;
}

}  // namespace mqttws
