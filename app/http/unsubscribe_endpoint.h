// One-click unsubscribe (RFC 8058) at /u/TOKEN, the URL `mailer run` puts in
// List-Unsubscribe. POST with List-Unsubscribe=One-Click (form-urlencoded or
// multipart/form-data) suppresses the recipient's address (reason
// unsubscribe, source http, the campaign, now) and answers 200, no redirect;
// repeating it changes nothing and answers 200 again. GET only shows a page
// whose button sends that POST: link scanners that follow every URL in a
// message must not unsubscribe anyone. A token that does not verify (forged,
// truncated, tampered) gets the same 400 whatever is wrong with it.
//
// The suppression takes effect for running campaigns at the next claim: the
// queue's claim turns deliveries of suppressed addresses into skipped.
// Deliveries already claimed (state sending) when the POST arrives may still
// be sent.
#pragma once

#include <memory>
#include <optional>
#include <string_view>

#include "app/db/database.h"
#include "app/http/http_server.h"
#include "sender/unsubscribe_token.h"

namespace mailer::app {

// What a POST body says.
enum class OneClickBody {
  kOneClick,         // carries List-Unsubscribe=One-Click
  kMissing,          // a form without it
  kUnsupportedType,  // neither form-urlencoded nor multipart/form-data
};

// Reads a POST body of Content-Type `content_type`. Never throws.
OneClickBody parse_one_click_body(std::string_view content_type, std::string_view body);

// The answer to `req`, whose path is /u/ followed by `token`, when it needs
// no database: the confirmation page (GET, HEAD), 405, 400 for a token that
// does not verify or a body without One-Click, 415. nullopt for a valid
// one-click POST, which UnsubscribeEndpoint::handle() answers. Never
// touches a database; safe on any thread.
std::optional<HttpResponse> answer_unsubscribe_without_database(
    const HttpRequest& req, std::string_view token, const sender::UnsubscribeTokenCodec& codec);

class UnsubscribeEndpoint {
 public:
  // Registers the statement on `db`.
  UnsubscribeEndpoint(db::Database& db, std::shared_ptr<const sender::UnsubscribeTokenCodec> codec);

  // Answers `req`, whose path is /u/ followed by `token`. Throws
  // db::ConnectionError when the database cannot be reached.
  HttpResponse handle(const HttpRequest& req, std::string_view token);

 private:
  // Suppresses the recipient's address; true when it was not suppressed
  // before. A recipient that no longer exists is logged and ignored.
  bool suppress(const sender::DeliveryIdentity& who);

  db::Database& db_;
  std::shared_ptr<const sender::UnsubscribeTokenCodec> codec_;
};

}  // namespace mailer::app
