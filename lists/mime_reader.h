// MimeReader: a bounded, forgiving reader of Internet messages (RFC 5322
// header fields, RFC 2045/2046 MIME structure) for the bounce parser. It
// reads what mail systems really send back, not only what the RFCs allow:
//   - LF, CRLF and bare CR line ends (normalised to LF once, up front);
//   - folded header lines, header names in any case;
//   - quoted-printable and base64 bodies (decoded leniently: bad sequences
//     are kept or skipped, never an error);
//   - nested multiparts, up to a depth and a part count;
//   - missing or wrong closing boundaries (the part runs to the end).
// It never throws for bad input; only std::bad_alloc can escape. A message
// and its parts are views into storage the MimeMessage owns, so a
// MimeMessage is neither copied nor moved.
#pragma once

#include <cstddef>
#include <deque>
#include <string>
#include <string_view>
#include <vector>

namespace mailer::lists {

// One header field: name as written, value unfolded (line ends removed, runs
// of folding whitespace kept as one space) and trimmed.
struct HeaderField {
  std::string_view name;
  std::string value;
};

// The header fields of a message or a body part, in order.
class HeaderBlock {
 public:
  // The value of the first field named `name` (ASCII case-insensitive), or
  // an empty view when there is none.
  std::string_view get(std::string_view name) const;
  // True when a field named `name` is present.
  bool has(std::string_view name) const;
  const std::vector<HeaderField>& fields() const { return fields_; }
  std::vector<HeaderField>& fields() { return fields_; }

 private:
  std::vector<HeaderField> fields_;
};

// Parses header fields from the start of `text` (LF line ends) up to the first
// empty line or the first line that is neither a field nor a continuation,
// keeping at most `max_fields`. `*body` receives what follows the empty line
// (all of `text` after the fields when there is none).
HeaderBlock parse_header_block(std::string_view text, std::size_t max_fields,
                               std::string_view* body);

// A Content-Type value, parsed: the media type lower-cased ("text/plain" when
// absent), and the parameters the bounce parser needs.
struct ContentType {
  std::string media_type = "text/plain";
  std::string boundary;
  std::string report_type;  // lower-cased
  std::string charset;      // lower-cased
  bool is_multipart() const { return media_type.starts_with("multipart/"); }
};
ContentType parse_content_type(std::string_view value);

// Bounds on the work one message may cost.
struct MimeLimits {
  // Body parts kept (leaves and containers together); later ones are ignored.
  std::size_t max_parts = 64;
  // Multipart nesting kept; deeper parts are read as opaque leaves.
  int max_depth = 8;
  // Header fields kept per header block.
  std::size_t max_header_fields = 256;
};

// A leaf body part: its headers, type and decoded body.
struct MimePart {
  HeaderBlock headers;
  ContentType content_type;
  std::string_view body;  // transfer encoding removed; LF line ends
  int depth = 0;
};

class MimeMessage {
 public:
  // Reads `raw` (any line ends). Keeps its own normalised copy.
  MimeMessage(std::string_view raw, const MimeLimits& limits);
  MimeMessage(const MimeMessage&) = delete;
  MimeMessage& operator=(const MimeMessage&) = delete;

  const HeaderBlock& headers() const { return headers_; }
  const ContentType& content_type() const { return content_type_; }
  // The leaf parts in document order; a message that is not multipart has
  // one leaf, its own body. message/rfc822 parts are leaves (their inner
  // structure is not descended into).
  const std::vector<MimePart>& leaves() const { return leaves_; }
  // Stores `text` for the life of the message and returns a view of it.
  std::string_view keep(std::string text);

 private:
  void ReadEntity(std::string_view headers_and_body, int depth);
  void ReadMultipart(std::string_view body, const std::string& boundary, int depth);
  std::string_view Decode(const HeaderBlock& headers, std::string_view body);

  MimeLimits limits_;
  std::string text_;
  HeaderBlock headers_;
  ContentType content_type_;
  std::vector<MimePart> leaves_;
  std::deque<std::string> storage_;
  std::size_t parts_seen_ = 0;
};

// Line-end normalisation: CRLF and bare CR become LF.
std::string normalize_line_ends(std::string_view raw);
// RFC 2045 section 6.8 base64, skipping anything outside the alphabet.
std::string decode_base64(std::string_view text);
// RFC 2045 section 6.7 quoted-printable; soft line breaks removed, malformed
// escapes kept literally.
std::string decode_quoted_printable(std::string_view text);
// ASCII lower-case copy.
std::string ascii_lower(std::string_view text);
// ASCII case-insensitive equality.
bool iequals(std::string_view a, std::string_view b);
// `text` without leading and trailing spaces and tabs.
std::string_view trim(std::string_view text);

}  // namespace mailer::lists
