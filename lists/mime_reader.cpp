#include "lists/mime_reader.h"

#include <array>
#include <cstdint>

namespace mailer::lists {
namespace {

char lower(char c) {
  return (c >= 'A' && c <= 'Z') ? static_cast<char>(c + ('a' - 'A')) : c;
}

bool is_space(char c) {
  return c == ' ' || c == '\t';
}

// A header field name: printable ASCII except ':' and space (RFC 5322 2.2).
bool is_field_name(std::string_view name) {
  if (name.empty()) return false;
  for (char c : name) {
    if (c <= ' ' || c > '~' || c == ':') return false;
  }
  return true;
}

// The value of parameter `name` in a Content-Type value (after the media
// type); quotes removed. Empty when absent.
std::string parameter(std::string_view value, std::string_view name) {
  std::size_t pos = value.find(';');
  while (pos != std::string_view::npos && pos < value.size()) {
    std::size_t start = pos + 1;
    while (start < value.size() && (is_space(value[start]) || value[start] == '\n')) ++start;
    std::size_t eq = value.find('=', start);
    if (eq == std::string_view::npos) return {};
    std::string_view key = trim(value.substr(start, eq - start));
    std::size_t vstart = eq + 1;
    while (vstart < value.size() && is_space(value[vstart])) ++vstart;
    std::string out;
    std::size_t end = vstart;
    if (vstart < value.size() && value[vstart] == '"') {
      end = vstart + 1;
      while (end < value.size() && value[end] != '"') {
        if (value[end] == '\\' && end + 1 < value.size()) ++end;
        out += value[end++];
      }
      if (end < value.size()) ++end;
    } else {
      while (end < value.size() && value[end] != ';' && !is_space(value[end])) out += value[end++];
    }
    if (iequals(key, name)) return out;
    pos = value.find(';', end);
  }
  return {};
}

int base64_value(char c) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '+') return 62;
  if (c == '/') return 63;
  return -1;
}

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  c = lower(c);
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;
}

// The boundary of a multipart whose Content-Type lost its parameter (some
// gateways break the folded line so that "boundary=..." lands in the body):
// the first line of at least 3 characters after "--", within the first 64
// lines.
std::string guess_boundary(std::string_view body) {
  std::size_t pos = 0;
  for (int line = 0; line < 64 && pos < body.size(); ++line) {
    std::size_t eol = body.find('\n', pos);
    std::string_view text =
        body.substr(pos, (eol == std::string_view::npos ? body.size() : eol) - pos);
    if (text.starts_with("--")) {
      std::string_view candidate = trim(text.substr(2));
      if (candidate.size() >= 3 && candidate.size() <= 200 && !candidate.ends_with("--")) {
        return std::string(candidate);
      }
    }
    if (eol == std::string_view::npos) break;
    pos = eol + 1;
  }
  return {};
}

}  // namespace

std::string ascii_lower(std::string_view text) {
  std::string out(text);
  for (char& c : out) c = lower(c);
  return out;
}

bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    if (lower(a[i]) != lower(b[i])) return false;
  }
  return true;
}

std::string_view trim(std::string_view text) {
  while (!text.empty() && (is_space(text.front()) || text.front() == '\n')) text.remove_prefix(1);
  while (!text.empty() && (is_space(text.back()) || text.back() == '\n')) text.remove_suffix(1);
  return text;
}

std::string normalize_line_ends(std::string_view raw) {
  std::string out;
  out.reserve(raw.size());
  for (std::size_t i = 0; i < raw.size(); ++i) {
    char c = raw[i];
    if (c == '\r') {
      out += '\n';
      if (i + 1 < raw.size() && raw[i + 1] == '\n') ++i;
    } else {
      out += c;
    }
  }
  return out;
}

std::string decode_base64(std::string_view text) {
  std::string out;
  out.reserve(text.size() / 4 * 3);
  std::uint32_t acc = 0;
  int bits = 0;
  for (char c : text) {
    if (c == '=') break;
    int v = base64_value(c);
    if (v < 0) continue;
    acc = (acc << 6) | static_cast<std::uint32_t>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out += static_cast<char>((acc >> bits) & 0xFF);
    }
  }
  return out;
}

std::string decode_quoted_printable(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (std::size_t i = 0; i < text.size(); ++i) {
    char c = text[i];
    if (c != '=') {
      out += c;
      continue;
    }
    // Soft line break: '=' then optional trailing whitespace then LF.
    std::size_t j = i + 1;
    while (j < text.size() && is_space(text[j])) ++j;
    if (j < text.size() && text[j] == '\n') {
      i = j;
      continue;
    }
    if (j >= text.size()) {
      i = j;
      continue;
    }
    if (i + 2 < text.size() && hex_value(text[i + 1]) >= 0 && hex_value(text[i + 2]) >= 0) {
      out += static_cast<char>(hex_value(text[i + 1]) * 16 + hex_value(text[i + 2]));
      i += 2;
    } else {
      out += c;
    }
  }
  return out;
}

std::string_view HeaderBlock::get(std::string_view name) const {
  for (const HeaderField& f : fields_) {
    if (iequals(f.name, name)) return f.value;
  }
  return {};
}

bool HeaderBlock::has(std::string_view name) const {
  for (const HeaderField& f : fields_) {
    if (iequals(f.name, name)) return true;
  }
  return false;
}

HeaderBlock parse_header_block(std::string_view text, std::size_t max_fields,
                               std::string_view* body) {
  HeaderBlock block;
  std::size_t pos = 0;
  // An mbox "From " line before the fields is skipped.
  if (text.starts_with("From ")) {
    std::size_t eol = text.find('\n');
    pos = eol == std::string_view::npos ? text.size() : eol + 1;
  }
  while (pos < text.size()) {
    std::size_t eol = text.find('\n', pos);
    std::size_t next = eol == std::string_view::npos ? text.size() : eol + 1;
    std::string_view line =
        text.substr(pos, (eol == std::string_view::npos ? text.size() : eol) - pos);
    if (line.empty()) {
      pos = next;
      break;
    }
    if (is_space(line.front())) {
      // Continuation of the previous field (or stray indentation: skipped).
      if (!block.fields().empty()) {
        std::string& value = block.fields().back().value;
        std::string_view more = trim(line);
        if (!more.empty()) {
          if (!value.empty()) value += ' ';
          value += more;
        }
      }
      pos = next;
      continue;
    }
    std::size_t colon = line.find(':');
    if (colon == std::string_view::npos || !is_field_name(trim(line.substr(0, colon)))) {
      // Not a header line: the body starts here (no empty line before it).
      break;
    }
    if (block.fields().size() < max_fields) {
      block.fields().push_back(
          HeaderField{trim(line.substr(0, colon)), std::string(trim(line.substr(colon + 1)))});
    }
    pos = next;
  }
  if (body) *body = text.substr(pos);
  return block;
}

ContentType parse_content_type(std::string_view value) {
  ContentType type;
  std::string_view media = trim(value.substr(0, value.find(';')));
  if (media.find('/') != std::string_view::npos) {
    type.media_type = ascii_lower(media);
    while (!type.media_type.empty() && is_space(type.media_type.back())) type.media_type.pop_back();
  }
  type.boundary = parameter(value, "boundary");
  type.report_type = ascii_lower(parameter(value, "report-type"));
  type.charset = ascii_lower(parameter(value, "charset"));
  return type;
}

MimeMessage::MimeMessage(std::string_view raw, const MimeLimits& limits)
    : limits_(limits), text_(normalize_line_ends(raw)) {
  std::string_view body;
  headers_ = parse_header_block(text_, limits_.max_header_fields, &body);
  content_type_ = parse_content_type(headers_.get("Content-Type"));
  if (content_type_.is_multipart() && content_type_.boundary.empty()) {
    content_type_.boundary = guess_boundary(body);
  }
  if (content_type_.is_multipart() && !content_type_.boundary.empty()) {
    ReadMultipart(body, content_type_.boundary, 1);
  } else {
    leaves_.push_back(MimePart{headers_, content_type_, Decode(headers_, body), 0});
  }
}

std::string_view MimeMessage::keep(std::string text) {
  storage_.push_back(std::move(text));
  return storage_.back();
}

std::string_view MimeMessage::Decode(const HeaderBlock& headers, std::string_view body) {
  std::string_view encoding = trim(headers.get("Content-Transfer-Encoding"));
  if (iequals(encoding, "base64")) return keep(normalize_line_ends(decode_base64(body)));
  if (iequals(encoding, "quoted-printable")) {
    return keep(normalize_line_ends(decode_quoted_printable(body)));
  }
  return body;
}

void MimeMessage::ReadEntity(std::string_view headers_and_body, int depth) {
  if (++parts_seen_ > limits_.max_parts) return;
  std::string_view body;
  HeaderBlock headers = parse_header_block(headers_and_body, limits_.max_header_fields, &body);
  ContentType type = parse_content_type(headers.get("Content-Type"));
  if (type.is_multipart() && type.boundary.empty()) type.boundary = guess_boundary(body);
  if (type.is_multipart() && !type.boundary.empty() && depth < limits_.max_depth) {
    ReadMultipart(body, type.boundary, depth + 1);
    return;
  }
  std::string_view decoded = Decode(headers, body);
  leaves_.push_back(MimePart{std::move(headers), std::move(type), decoded, depth});
}

void MimeMessage::ReadMultipart(std::string_view body, const std::string& boundary, int depth) {
  // Delimiter lines are "--boundary" (then optional whitespace) and the
  // closing "--boundary--". Text before the first delimiter is the preamble;
  // some MTAs put the human-readable notice there, so it is kept as a leaf.
  const std::string delimiter = "--" + boundary;
  std::size_t pos = 0;
  std::size_t part_start = std::string_view::npos;
  bool closed = false;
  std::string_view preamble;
  while (pos <= body.size()) {
    std::size_t eol = body.find('\n', pos);
    std::size_t line_end = eol == std::string_view::npos ? body.size() : eol;
    std::string_view line = body.substr(pos, line_end - pos);
    if (line.starts_with(delimiter)) {
      std::string_view rest = line.substr(delimiter.size());
      bool closing = rest.starts_with("--");
      if (closing || trim(rest).empty()) {
        // The line end before the delimiter belongs to the delimiter.
        std::size_t content_end = pos > 0 ? pos - 1 : 0;
        if (part_start == std::string_view::npos) {
          preamble = body.substr(0, content_end);
        } else if (content_end >= part_start) {
          ReadEntity(body.substr(part_start, content_end - part_start), depth);
        } else {
          ReadEntity({}, depth);
        }
        if (closing) {
          closed = true;
          break;
        }
        part_start = line_end == body.size() ? body.size() : line_end + 1;
      }
    }
    if (eol == std::string_view::npos) break;
    pos = eol + 1;
  }
  if (!closed && part_start != std::string_view::npos && part_start < body.size()) {
    ReadEntity(body.substr(part_start), depth);
  }
  if (part_start == std::string_view::npos) {
    // No delimiter at all: the whole body is one text leaf.
    preamble = body;
  }
  if (!trim(preamble).empty() && leaves_.size() < limits_.max_parts) {
    MimePart part;
    part.content_type.media_type = "text/x-preamble";
    part.body = preamble;
    part.depth = depth;
    leaves_.push_back(std::move(part));
  }
}

}  // namespace mailer::lists
