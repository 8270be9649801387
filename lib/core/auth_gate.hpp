// Who a client is, for how long, and whether its frames are its own: authentication, session
// tokens for resuming, tokens expiring on live connections, revocation, signed device frames.
//
// - Credentials come with the WebSocket handshake (checked at once) or in an `auth` frame, and
//   are checked under the limits on failed attempts per address and per user (auth_limiter);
//   wrong ones close the connection (4403, or 4429 over a limit). A client with neither is told
//   to authenticate and closed at its deadline (the engine's tick).
// - A JWT's exp holds on a live connection: `token_expiring` ahead of it, 4401 at it, unless
//   the client sent a new token for the same identity (`refresh`), whose claims apply at once.
// - A reload may revoke what a client authenticated with (revocation_list).
// - A device with a key (--device-keys) signs its frames; the signature, its timestamp and its
//   nonce are checked here (frame_signature.hpp).
// - Session tokens: the secret a client presents to resume its session after a drop.
//
// Thread safety: none; the engine's thread.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>

#include "core/auth_limiter.hpp"
#include "core/delivery_pacer.hpp"
#include "core/engine_context.hpp"
#include "core/frame_signature.hpp"

namespace mqttws {

class auth_gate {
  public:
    // `limits`: the failed-attempt limits, shared by engine shards (auth_limiter.hpp).
    auth_gate(engine_context& ctx, delivery_pacer& pacer, std::shared_ptr<auth_limiter> limits);

    // A connection opened: credentials in its handshake are checked at once; otherwise, when
    // credentials are required, the client's deadline to authenticate starts.
    void opened(session& s, handshake_credentials handshake, action_list& out);
    // The credentials of an `auth` frame; nullopt after refusing them (the connection closes).
    std::optional<identity> check(session& s, const auth_request& r, action_list& out);
    // A request before `auth`: the handshake's credentials, or anonymous where allowed; else the
    // client is told to authenticate. True when `s` is authenticated now.
    bool ensure_authenticated(session& s, const msg_id& id, action_list& out);
    // `s` is now who `who` says (an anonymous client gets a generated `anon-` id).
    void admit(session& s, identity who, bool is_device, action_list& out);
    // A resumed session takes the credentials its new connection presented.
    void take_credentials(session& s, identity& who);

    // ---- session tokens ----
    void issue_session_token(session& s);
    // The session `token` names, if it belongs to `client_id`.
    session* session_for_token(const std::string& token, const std::string& client_id);
    void forget_session_token(const session& s);

    // ---- while connected ----
    // `refresh`: true when the new token was taken (its ACL claims then need a recheck).
    bool refresh(session& s, refresh_request& r, action_list& out);
    // token_expiring ahead of exp, 4401 at it.
    void check_token(session& s, std::int64_t wall_now, action_list& out);
    // Why `s`'s credentials are revoked by the policy in force, if they are.
    std::optional<std::string> revoked(const session& s) const;

    // ---- signed device frames ----
    struct refusal {
        errc code;
        std::string message;
    };
    // For a device with a key: nullopt when `frame` may be handled (signed and fresh, or need
    // not be), else why not.
    std::optional<refusal> check_signature(const session& s, std::string_view frame,
                                           const signature_fields& proof);
    // A binary frame cannot be signed: refused for a device whose key says `required`.
    bool binary_allowed(const session& s) const;

    // Forgets addresses and users whose failure allowance refilled, nonces out of the window.
    void tick(std::int64_t steady_now, std::int64_t wall_now);

  private:
    // The address the limits on failed attempts count for `s`: its IP, IPv6 by prefix.
    std::string limited_address(const session& s) const;
    std::optional<identity> check_credentials(session& s, const auth_request* frame,
                                              action_list& out);

    engine_context& ctx_;
    delivery_pacer& pacer_;
    std::shared_ptr<auth_limiter> limits_;
    replay_guard replays_;
    std::unordered_map<std::string, session*> sessions_by_token_;
};

}  // namespace mqttws
