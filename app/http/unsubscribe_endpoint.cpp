#include "app/http/unsubscribe_endpoint.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <cctype>
#include <optional>
#include <string>

namespace mailer::app {
namespace {

namespace http = boost::beast::http;

constexpr const char* kSuppress = "unsubscribe_one_click";

// The page policy: nothing is fetched or run; the form may only post back
// to this server.
constexpr const char* kPagePolicy =
    "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'";

constexpr const char* kPageStyle =
    "body{font:16px/1.5 system-ui,sans-serif;max-width:32em;margin:3em auto;padding:0 1em;"
    "color:#222}button{font:inherit;padding:.5em 1.4em;cursor:pointer}";

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) s.remove_prefix(1);
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.remove_suffix(1);
  return s;
}

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// application/x-www-form-urlencoded decoding of one name or value; nullopt
// for a broken percent escape.
std::optional<std::string> form_decode(std::string_view s) {
  std::string out;
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '+') {
      out += ' ';
    } else if (s[i] == '%') {
      if (i + 2 >= s.size()) return std::nullopt;
      const int hi = hex_value(s[i + 1]);
      const int lo = hex_value(s[i + 2]);
      if (hi < 0 || lo < 0) return std::nullopt;
      out += static_cast<char>(hi * 16 + lo);
      i += 2;
    } else {
      out += s[i];
    }
  }
  return out;
}

bool is_one_click_pair(std::string_view name, std::string_view value) {
  return name == "List-Unsubscribe" && value == "One-Click";
}

OneClickBody parse_urlencoded(std::string_view body) {
  body = trim(body);
  while (!body.empty()) {
    const auto amp = body.find('&');
    const std::string_view pair = body.substr(0, amp);
    body = amp == std::string_view::npos ? std::string_view{} : body.substr(amp + 1);
    const auto eq = pair.find('=');
    if (eq == std::string_view::npos) continue;
    const auto name = form_decode(pair.substr(0, eq));
    const auto value = form_decode(pair.substr(eq + 1));
    if (name && value && is_one_click_pair(*name, *value)) return OneClickBody::kOneClick;
  }
  return OneClickBody::kMissing;
}

// The value of parameter `name` of a Content-Type, unquoted; "" when absent.
std::string content_type_parameter(std::string_view content_type, std::string_view name) {
  std::size_t pos = content_type.find(';');
  while (pos != std::string_view::npos) {
    std::string_view rest = content_type.substr(pos + 1);
    const auto next = rest.find(';');
    std::string_view param = trim(rest.substr(0, next));
    pos = next == std::string_view::npos ? next : pos + 1 + next;
    const auto eq = param.find('=');
    if (eq == std::string_view::npos || lower(trim(param.substr(0, eq))) != name) continue;
    std::string_view value = trim(param.substr(eq + 1));
    if (value.size() >= 2 && value.front() == '"' && value.back() == '"') {
      value = value.substr(1, value.size() - 2);
    }
    return std::string(value);
  }
  return {};
}

// multipart/form-data (RFC 7578): looks for the part named List-Unsubscribe.
OneClickBody parse_multipart(std::string_view content_type, std::string_view body) {
  const std::string boundary = content_type_parameter(content_type, "boundary");
  // RFC 2046: 1 to 70 characters.
  if (boundary.empty() || boundary.size() > 70) return OneClickBody::kMissing;
  const std::string delimiter = "--" + boundary;
  std::size_t pos = body.find(delimiter);
  while (pos != std::string_view::npos) {
    std::size_t start = pos + delimiter.size();
    if (body.substr(start, 2) == "--") break;  // the closing delimiter
    const std::size_t next = body.find(delimiter, start);
    if (next == std::string_view::npos) break;
    std::string_view part = body.substr(start, next - start);
    if (part.substr(0, 2) == "\r\n") part.remove_prefix(2);
    const auto blank = part.find("\r\n\r\n");
    if (blank != std::string_view::npos) {
      const std::string headers = lower(part.substr(0, blank));
      std::string_view content = part.substr(blank + 4);
      if (content.size() >= 2 && content.substr(content.size() - 2) == "\r\n") {
        content.remove_suffix(2);
      }
      // Header names and the field name are matched without case, the value exactly.
      const bool named = headers.find("content-disposition:") != std::string::npos &&
                         (headers.find("name=\"list-unsubscribe\"") != std::string::npos ||
                          headers.find("name=list-unsubscribe") != std::string::npos);
      if (named && content == "One-Click") {
        return OneClickBody::kOneClick;
      }
    }
    pos = next;
  }
  return OneClickBody::kMissing;
}

HttpResponse html_page(http::status status, const HttpRequest& req, std::string_view title,
                       std::string_view body_html) {
  HttpResponse res = text_response(status, "", req.version());
  res.set(http::field::content_type, "text/html; charset=utf-8");
  res.set("Content-Security-Policy", kPagePolicy);
  // The token in the URL must not travel to other sites.
  res.set("Referrer-Policy", "no-referrer");
  res.body() = fmt::format(
      "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" "
      "content=\"width=device-width,initial-scale=1\"><meta name=\"robots\" content=\"noindex\">"
      "<title>{}</title><style>{}</style></head><body>{}</body></html>\n",
      title, kPageStyle, body_html);
  res.prepare_payload();
  return res;
}

HttpResponse confirmation_page(const HttpRequest& req) {
  // No action attribute: the form posts to this very URL, whatever prefix a
  // reverse proxy put in front of it.
  return html_page(http::status::ok, req, "Unsubscribe",
                   "<h1>Unsubscribe</h1><p>Stop receiving these emails?</p>"
                   "<form method=\"post\" enctype=\"application/x-www-form-urlencoded\">"
                   "<input type=\"hidden\" name=\"List-Unsubscribe\" value=\"One-Click\">"
                   "<button type=\"submit\">Unsubscribe</button></form>");
}

HttpResponse done_page(const HttpRequest& req) {
  return html_page(http::status::ok, req, "Unsubscribed",
                   "<h1>You are unsubscribed</h1><p>You will not receive these emails again.</p>");
}

}  // namespace

OneClickBody parse_one_click_body(std::string_view content_type, std::string_view body) {
  const std::string media = lower(trim(content_type.substr(0, content_type.find(';'))));
  if (media == "application/x-www-form-urlencoded") return parse_urlencoded(body);
  if (media == "multipart/form-data") return parse_multipart(content_type, body);
  return OneClickBody::kUnsupportedType;
}

UnsubscribeEndpoint::UnsubscribeEndpoint(db::Database& db,
                                         std::shared_ptr<const sender::UnsubscribeTokenCodec> codec)
    : db_(db), codec_(std::move(codec)) {
  // One statement: the recipient's comparison key, suppressed unless it
  // already is (the first suppression of an address is the one kept).
  db_.prepare(kSuppress,
              "WITH r AS (SELECT email_key FROM recipients WHERE id = $1),"
              " ins AS (INSERT INTO suppressions (email_key, reason, source, campaign_id, detail)"
              "  SELECT email_key, 'unsubscribe', 'http', $2::bigint,"
              "   'one-click unsubscribe, delivery ' || $3::bigint::text FROM r"
              "  ON CONFLICT (email_key) DO NOTHING RETURNING 1)"
              " SELECT (SELECT count(*) FROM r), (SELECT count(*) FROM ins)");
}

bool UnsubscribeEndpoint::suppress(const sender::DeliveryIdentity& who) {
  const auto [found, added] = db_.transact([&](pqxx::work& w) {
    const pqxx::row r =
        w.exec_prepared1(kSuppress, who.recipient_id, who.campaign_id, who.delivery_id);
    return std::pair{r[0].as<std::int64_t>(), r[1].as<std::int64_t>()};
  });
  if (found == 0) {
    spdlog::warn("unsubscribe: recipient {} (campaign {}) no longer exists; nothing to suppress",
                 who.recipient_id, who.campaign_id);
  } else if (added > 0) {
    spdlog::info("unsubscribe: recipient {} suppressed (campaign {}, delivery {})",
                 who.recipient_id, who.campaign_id, who.delivery_id);
  }
  return added > 0;
}

std::optional<HttpResponse> answer_unsubscribe_without_database(
    const HttpRequest& req, std::string_view token, const sender::UnsubscribeTokenCodec& codec) {
  const bool get = req.method() == http::verb::get || req.method() == http::verb::head;
  if (!get && req.method() != http::verb::post) {
    HttpResponse res =
        text_response(http::status::method_not_allowed, "method not allowed\n", req.version());
    res.set(http::field::allow, "GET, HEAD, POST");
    return res;
  }
  if (!codec.Verify(token)) {
    return text_response(http::status::bad_request, "invalid unsubscribe link\n", req.version());
  }
  if (get) return confirmation_page(req);
  const auto content_type = req[http::field::content_type];
  switch (parse_one_click_body({content_type.data(), content_type.size()}, req.body())) {
    case OneClickBody::kUnsupportedType:
      return text_response(http::status::unsupported_media_type,
                           "expected application/x-www-form-urlencoded or multipart/form-data\n",
                           req.version());
    case OneClickBody::kMissing:
      return text_response(http::status::bad_request,
                           "expected List-Unsubscribe=One-Click in the body\n", req.version());
    case OneClickBody::kOneClick:
      break;
  }
  return std::nullopt;
}

HttpResponse UnsubscribeEndpoint::handle(const HttpRequest& req, std::string_view token) {
  if (auto answer = answer_unsubscribe_without_database(req, token, *codec_)) return *answer;
  suppress(*codec_->Verify(token));
  return done_page(req);
}

}  // namespace mailer::app
