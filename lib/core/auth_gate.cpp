#include "core/auth_gate.hpp"

#include "core/admission.hpp"
#include "core/handshake.hpp"
#include "core/replies.hpp"

namespace mqttws {

auth_gate::auth_gate(engine_context& ctx, delivery_pacer& pacer,
                     std::shared_ptr<auth_limiter> limits)
    : ctx_(ctx),
      pacer_(pacer),
      limits_(std::move(limits)),
      replays_(ctx.config.auth.replay_window_ms, ctx.config.auth.replay_nonces_per_device) {}

// ---------------------------------------------------------------- authentication

void auth_gate::opened(session& s, handshake_credentials handshake, action_list& out) {
    const authenticator& auth = ctx_.security().auth;
    const bool self_contained = auth.configured() && auth.self_contained(handshake);
    s.set_handshake(std::move(handshake));
    if (self_contained) {
        // Credentials in the handshake are checked at once: a wrong token never gets further.
        // (A bare token for a password file waits for the `auth` frame naming the user.) When
        // valid, the client may send `auth` (to resume) or go straight to requests.
        check_credentials(s, nullptr, out);
        return;
    }
    if (auth.required())
        s.live().auth_deadline_ms = ctx_.env.steady_ms() + ctx_.config.auth.auth_timeout_ms;
}

std::optional<identity> auth_gate::check(session& s, const auth_request& r, action_list& out) {
    return check_credentials(s, &r, out);
}

std::optional<identity> auth_gate::check_credentials(session& s, const auth_request* frame,
                                                     action_list& out) {
    const std::int64_t now = ctx_.env.steady_ms();
    const std::string address = limited_address(s);
    const security_policy& policy = ctx_.security();
    const auto refuse = [&](close_code code, std::string reason) -> std::optional<identity> {
        out.push_back(audit_record{"auth_failure",
                                   frame != nullptr ? frame->client_id : "",
                                   s.remote_address(),
                                   {},
                                   std::move(reason)});
        out.push_back(close_client{s.connection(), code,
                                   code == close_code::auth_rate_limited
                                       ? "Too many failed authentication attempts"
                                       : "Authentication failed"});
        s.live().closing = true;
        return std::nullopt;
    };
    if (!limits_->address_allowed(address, now))
        return refuse(close_code::auth_rate_limited, "too many failed attempts from this address");
    // The per-user limit is applied before the (deliberately slow) password check.
    const std::string user = policy.auth.password_user(frame, s.handshake());
    if (!user.empty() && !limits_->user_allowed(user, address, now)) {
        ++ctx_.stats.auth_failures;
        return refuse(close_code::auth_rate_limited,
                      "too many failed attempts for user '" + user + "'");
    }
    auto checked = policy.auth.authenticate(frame, s.handshake(), ctx_.env.wall_ms() / 1000);
    if (auto* failure = std::get_if<auth_refusal>(&checked)) {
        ++ctx_.stats.auth_failures;
        limits_->failed(address, user, now);
        return refuse(close_code::auth_failed, std::move(failure->reason));
    }
    identity& who = std::get<identity>(checked);
    if (auto why = policy.revoked.revokes(who.client_id, who.username, who.token_id))
        return refuse(close_code::auth_failed, std::move(*why));
    limits_->succeeded(user, address);
    return std::move(who);
}

bool auth_gate::ensure_authenticated(session& s, const msg_id& id, action_list& out) {
    if (s.authenticated()) return true;
    // A request before `auth`: the handshake's credentials, or anonymous where allowed. A
    // client without either is told to authenticate (and closed at its auth deadline).
    const security_policy& policy = ctx_.security();
    auto checked = policy.auth.authenticate(nullptr, s.handshake(), ctx_.env.wall_ms() / 1000);
    const auto* who = std::get_if<identity>(&checked);
    if (who == nullptr || policy.revoked.revokes(who->client_id, who->username, who->token_id)) {
        pacer_.send_error(s, errc::not_authenticated, "send an auth frame with credentials first",
                          id, out);
        return false;
    }
    admit(s, std::get<identity>(std::move(checked)), false, out);
    return true;
}

void auth_gate::admit(session& s, identity who, bool is_device, action_list& out) {
    std::string client_id =
        who.client_id.empty() ? "anon-" + ctx_.env.random_hex(6) : std::move(who.client_id);
    std::string control_topic;
    if (is_device) control_topic = ctx_.config.device_topic_prefix + "/" + client_id + "/control";
    s.authenticate(std::move(client_id), is_device, std::move(control_topic));
    const std::string method = who.method;
    take_credentials(s, who);
    s.live().auth_deadline_ms = 0;
    if (method != "anonymous") ctx_.audit(s, "auth_success", {}, method, out);
}

void auth_gate::take_credentials(session& s, identity& who) {
    s.set_acl_identity(std::move(who.username), std::move(who.grant));
    token_state& token = s.token_info();
    token.expires_ms = who.expires_at ? *who.expires_at * 1000 : 0;
    token.id = std::move(who.token_id);
    token.expiry_told = false;
}

std::string auth_gate::limited_address(const session& s) const {
    return address_group(address_without_port(s.remote_address()), ctx_.config.auth.ipv6_prefix);
}

// ---------------------------------------------------------------- session tokens

void auth_gate::issue_session_token(session& s) {
    s.set_token(ctx_.config.auth.session_token_prefix + ctx_.env.random_hex(16));
    sessions_by_token_[s.token()] = &s;
}

session* auth_gate::session_for_token(const std::string& token, const std::string& client_id) {
    const auto it = sessions_by_token_.find(token);
    if (it == sessions_by_token_.end() || it->second->client_id() != client_id) return nullptr;
    return it->second;
}

void auth_gate::forget_session_token(const session& s) {
    if (s.resumable()) sessions_by_token_.erase(s.token());
}

// ---------------------------------------------------------------- while connected

bool auth_gate::refresh(session& s, refresh_request& r, action_list& out) {
    const security_policy& policy = ctx_.security();
    const std::string address = limited_address(s);
    const std::int64_t now = ctx_.env.steady_ms();
    const auto refuse = [&](std::string why, std::string_view told) {
        ctx_.audit(s, "refresh_failure", {}, std::move(why), out);
        pacer_.send_error(s, errc::forbidden, told, r.id, out);
        return false;
    };
    // Only a token is refreshed. Anything else would be checked as a password, deliberately
    // slow, as often as a connected client cares to ask: a way to burn the bridge's CPU and to
    // guess passwords outside the limits on failed attempts.
    if (!policy.auth.takes_token(r.token))
        return refuse("refresh without a JWT", "refresh takes a JWT");
    if (!limits_->address_allowed(address, now))
        return refuse("too many failed attempts from this address",
                      "too many failed attempts from this address");
    // The new token must be for the same identity: the client id (a JWT's sub) and the user.
    auth_request same;
    same.client_id = s.client_id();
    same.token = std::move(r.token);
    auto checked = policy.auth.authenticate(&same, s.handshake(), ctx_.env.wall_ms() / 1000);
    if (auto* failure = std::get_if<auth_refusal>(&checked)) {
        ++ctx_.stats.auth_failures;
        limits_->failed(address, {}, now);
        return refuse(failure->reason, "the new token was refused");
    }
    identity& who = std::get<identity>(checked);
    if (who.username != s.username()) {
        return refuse("the new token is for user '" + who.username + "'",
                      "the new token is for another identity");
    }
    if (auto why = policy.revoked.revokes(who.client_id, who.username, who.token_id))
        return refuse(*why, "the new token was refused");
    ++ctx_.stats.token_refreshes;
    ctx_.audit(s, "token_refresh", {}, who.method, out);
    take_credentials(s, who);
    const std::int64_t expires = s.token_info().expires_ms;
    pacer_.send(s, out_kind::refresh_response,
                encode_refresh_response(
                    expires != 0 ? std::optional<std::int64_t>(expires) : std::nullopt, r.id),
                out);
    return true;
}

void auth_gate::check_token(session& s, std::int64_t wall_now, action_list& out) {
    token_state& token = s.token_info();
    if (token.expires_ms == 0) return;
    if (wall_now >= token.expires_ms) {
        ++ctx_.stats.token_expiries;
        s.live().closing = true;
        out.push_back(close_client{s.connection(), close_code::token_expired, "Token expired"});
        return;
    }
    if (!token.expiry_told &&
        wall_now >= token.expires_ms - ctx_.config.auth.token_expiry_warning_ms) {
        token.expiry_told = true;
        pacer_.send(s, out_kind::token_expiring,
                    encode_token_expiring(token.expires_ms - wall_now, token.expires_ms), out);
    }
}

std::optional<std::string> auth_gate::revoked(const session& s) const {
    return ctx_.security().revoked.revokes(s.client_id(), s.username(), s.token_info().id);
}

// ---------------------------------------------------------------- signed device frames

std::optional<auth_gate::refusal> auth_gate::check_signature(const session& s,
                                                             std::string_view frame,
                                                             const signature_fields& proof) {
    const device_keys::key* key = ctx_.security().signing_keys.find(s.client_id());
    if (key == nullptr) return std::nullopt;  // not a device with a key
    const std::optional<frame_signature> signature = split_signature(frame);
    if (!signature) {
        if (!key->required) return std::nullopt;
        return refusal{errc::bad_signature, "frames of this device must be signed"};
    }
    if (proof.sig != signature->signature)
        return refusal{errc::bad_signature, "'sig' must be the last member of the frame"};
    if (!signature_valid(key->secret, *signature))
        return refusal{errc::bad_signature, "the signature does not verify"};
    if (!proof.ts || !valid_nonce(proof.nonce)) {
        return refusal{errc::bad_signature,
                       "a signed frame needs 'ts' (ms) and a 'nonce' of 8 to 64 characters"};
    }
    if (!replays_.fresh(s.client_id(), *proof.ts, proof.nonce, ctx_.env.wall_ms())) {
        return refusal{errc::replayed,
                       "'ts' is outside the replay window, or the nonce was seen before"};
    }
    return std::nullopt;
}

bool auth_gate::binary_allowed(const session& s) const {
    const device_keys::key* key = ctx_.security().signing_keys.find(s.client_id());
    return key == nullptr || !key->required;
}

void auth_gate::tick(std::int64_t steady_now, std::int64_t wall_now) {
    limits_->forget_idle(steady_now);
    replays_.expire(wall_now);
}

}  // namespace mqttws
