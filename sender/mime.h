// MIME and RFC 5322 building blocks for outgoing messages: body transfer
// encodings (quoted-printable, base64), RFC 2047 encoded words for headers,
// header folding, and mailbox addresses that are valid by construction.
//
// Everything here produces CRLF line ends and output that cannot contain a
// bare CR, LF or NUL: untrusted text (merge fields, campaign fields) passed to
// these functions can never start a new header line or a MIME part.
#pragma once

#include <cstddef>
#include <stdexcept>
#include <string>
#include <string_view>

namespace mailer::sender {

// RFC 2045 6.7: encoded lines are at most 76 characters, soft break included.
inline constexpr std::size_t kMaxEncodedLineLength = 76;
// RFC 5322 2.1.1: lines SHOULD be at most 78 characters (without CRLF).
inline constexpr std::size_t kPreferredHeaderLineLength = 78;
// RFC 2047 2: an encoded word is at most 75 characters.
inline constexpr std::size_t kMaxEncodedWordLength = 75;

// Thrown when an address or header input cannot be made safe, e.g. an address
// with a CR in it. The message names the offending input.
class MimeError : public std::invalid_argument {
 public:
  using std::invalid_argument::invalid_argument;
};

// Body transfer encoding of one text part.
enum class TransferEncoding { kQuotedPrintable, kBase64 };

// "quoted-printable" or "base64", for Content-Transfer-Encoding.
std::string_view TransferEncodingName(TransferEncoding encoding);

// Picks the shorter encoding for `text`: quoted-printable for mostly-ASCII text
// (readable, small), base64 when so many bytes need escaping that QP would be
// larger (CJK, Cyrillic, ...).
TransferEncoding ChooseTransferEncoding(std::string_view text);

// Quoted-printable (RFC 2045 6.7) of UTF-8 text. Line breaks in the input (LF,
// CRLF or lone CR) become CRLF hard breaks; every output line is at most 76
// characters, soft breaks ("=" CRLF) never split an "=XX" escape; trailing
// whitespace, '=', control bytes, non-ASCII bytes and a leading '.' are
// escaped. The result ends with CRLF unless empty.
std::string EncodeQuotedPrintable(std::string_view text);

// Base64 (RFC 2045 6.8) of `data` with CRLF after every 76 characters and at
// the end (unless empty). Line breaks in the input are first normalised to
// CRLF (text parts are canonical CRLF text, RFC 2046 4.1.1).
std::string EncodeBase64Text(std::string_view text);

// Plain base64 without line breaks (standard alphabet, with padding).
std::string Base64(std::string_view data);

// Replaces CR, LF, NUL and every other C0 control or DEL in header text by a
// space (tab included), so untrusted text stays on its header line. Invalid
// UTF-8 sequences become U+FFFD.
std::string SanitizeHeaderText(std::string_view text);

// True when `text` is valid UTF-8.
bool IsValidUtf8(std::string_view text);

// The value of an unstructured header (Subject and the like) made safe and
// folded: sanitised, then either kept as ASCII words folded at spaces, or
// (non-ASCII text, or text that would read as an encoded word) written as
// RFC 2047 "=?UTF-8?B?...?=" words that never split a UTF-8 sequence.
// `name_length` is the length of the field name; lines stay within 78
// characters where the words allow. Returns the value without the trailing
// CRLF; continuation lines start with a space.
std::string EncodeUnstructuredHeader(std::string_view text, std::size_t name_length);

// An addr-spec (local@domain) accepted for use in headers and the SMTP
// envelope. ASCII only (IDN domains arrive as A-labels from lists/); the local
// part is a dot-atom or, when it needs it, is written as a quoted string.
class MailAddress {
 public:
  // Parses `text` ("user@example.com", surrounding spaces ignored). Throws
  // MimeError naming the input when it is not a usable address.
  static MailAddress Parse(std::string_view text);

  // The address as written in headers (local part quoted when needed).
  const std::string& header_form() const { return header_form_; }
  // The address for the SMTP envelope (same as header_form here).
  const std::string& envelope_form() const { return header_form_; }
  const std::string& local_part() const { return local_part_; }
  const std::string& domain() const { return domain_; }

 private:
  MailAddress(std::string local, std::string domain, std::string header_form)
      : local_part_(std::move(local)),
        domain_(std::move(domain)),
        header_form_(std::move(header_form)) {}

  std::string local_part_;
  std::string domain_;
  std::string header_form_;
};

// A display name plus address, e.g. `"Doe, Jane" <jane@example.com>`.
struct Mailbox {
  std::string display_name;  // UTF-8, may be empty; sanitised when written
  MailAddress address;

  // Parses `Name <addr>` or a bare address. Throws MimeError on bad input.
  static Mailbox Parse(std::string_view text);
};

// The mailbox as an address header value (From, To, Reply-To), folded for a
// field name of `name_length` characters: the display name as an atom phrase,
// a quoted string, or RFC 2047 encoded words; then "<addr>".
std::string EncodeMailboxHeader(const Mailbox& mailbox, std::size_t name_length);

// Appends "Name: value" CRLF to `out`, folding an ASCII value at spaces when
// the line would be longer than 78 characters. `name` must be a constant field
// name and `value` already safe (built by the functions above or sanitised):
// throws MimeError if either contains CR, LF or NUL, so a mistake cannot
// inject a header.
void AppendHeader(std::string& out, std::string_view name, std::string_view value);

}  // namespace mailer::sender
