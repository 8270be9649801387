// Credentials revoked before they expire (--revoked-file, reloaded on SIGHUP): a token by its
// `jti`, a client by its id, or a user by name. A client presenting a revoked credential is
// refused, and one already connected with it is closed (4403) when the list is reloaded.
//
// The file has one entry per line, `jti <id>`, `client <id>` or `user <name>`; `#` starts a
// comment, blank lines are ignored. The value is the rest of the line, so user names may
// contain spaces.
//
// Thread safety: immutable after parse(); replaced as a whole on reload.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <unordered_set>
#include <variant>
#include <vector>

#include "core/config_text.hpp"

namespace mqttws {

class revocation_list {
  public:
    static std::variant<revocation_list, std::vector<line_error>> parse(std::string_view text);

    // Why a client with these credentials is revoked (one sentence), or nullopt.
    std::optional<std::string> revokes(const std::string& client_id, const std::string& username,
                                       const std::optional<std::string>& token_id) const;
    bool empty() const { return tokens_.empty() && clients_.empty() && users_.empty(); }
    std::size_t size() const { return tokens_.size() + clients_.size() + users_.size(); }

  private:
    std::unordered_set<std::string> tokens_;
    std::unordered_set<std::string> clients_;
    std::unordered_set<std::string> users_;
};

}  // namespace mqttws
