// Campaign templates with merge fields; see template.h.
#include "sender/template.h"

#include <fmt/format.h>

#include <nlohmann/json.hpp>

#include "sender/html_escape.h"

namespace mailer::sender {
namespace {

constexpr std::string_view kOpen = "{{";
constexpr std::string_view kClose = "}}";

std::string_view Trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

bool IsValidFieldName(std::string_view name) {
  if (name.empty()) return false;
  const char first = name.front();
  if (!((first >= 'a' && first <= 'z') || (first >= 'A' && first <= 'Z') || first == '_')) {
    return false;
  }
  for (char c : name) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '_' || c == '-' || c == '.';
    if (!ok) return false;
  }
  return true;
}

}  // namespace

MergeFields MergeFields::FromJsonObject(std::string_view json_text) {
  nlohmann::json doc;
  try {
    doc = nlohmann::json::parse(json_text);
  } catch (const nlohmann::json::parse_error& e) {
    throw std::invalid_argument(
        fmt::format("recipient attributes are not valid JSON: {}", e.what()));
  }
  if (!doc.is_object()) throw std::invalid_argument("recipient attributes are not a JSON object");
  MergeFields fields;
  for (const auto& [key, value] : doc.items()) {
    if (value.is_null()) continue;
    fields.Set(key, value.is_string() ? value.get<std::string>() : value.dump());
  }
  return fields;
}

const std::string* MergeFields::Find(std::string_view name) const {
  if (name == kEmailField) return &email_;
  if (name == kUnsubscribeUrlField) return &unsubscribe_url_;
  const auto it = attributes_.find(std::string(name));
  return it == attributes_.end() ? nullptr : &it->second;
}

CompiledTemplate CompiledTemplate::Compile(std::string_view source, std::string_view name,
                                           TemplateEscaping escaping) {
  CompiledTemplate tpl;
  tpl.name_ = std::string(name);
  tpl.escaping_ = escaping;
  std::size_t pos = 0;
  while (pos < source.size()) {
    const std::size_t open = source.find(kOpen, pos);
    if (open == std::string_view::npos) {
      tpl.tokens_.push_back({false, std::string(source.substr(pos)), false, "", pos});
      break;
    }
    if (open > pos)
      tpl.tokens_.push_back({false, std::string(source.substr(pos, open - pos)), false, "", pos});
    const std::size_t close = source.find(kClose, open + kOpen.size());
    const std::size_t nested = source.find(kOpen, open + kOpen.size());
    if (close == std::string_view::npos || (nested != std::string_view::npos && nested < close)) {
      throw TemplateSyntaxError(
          fmt::format("{} template: unclosed \"{{{{\" at offset {}", name, open), open);
    }
    const std::string_view inner = source.substr(open + kOpen.size(), close - open - kOpen.size());
    const std::size_t bar = inner.find('|');
    const std::string_view field = Trim(inner.substr(0, bar));
    if (!IsValidFieldName(field)) {
      throw TemplateSyntaxError(
          fmt::format("{} template: invalid merge field name \"{}\" at offset {}", name, field,
                      open),
          open);
    }
    Token token{true, std::string(field), bar != std::string_view::npos, "", open};
    if (token.has_default) token.fallback = std::string(Trim(inner.substr(bar + 1)));
    tpl.tokens_.push_back(std::move(token));
    pos = close + kClose.size();
  }
  for (const Token& t : tpl.tokens_) {
    tpl.literal_size_ += t.is_field ? t.fallback.size() + 8 : t.text.size();
  }
  return tpl;
}

void CompiledTemplate::RenderTo(const MergeFields& fields, std::string& out) const {
  out.reserve(out.size() + literal_size_);
  for (const Token& t : tokens_) {
    if (!t.is_field) {
      out += t.text;
      continue;
    }
    const std::string* value = fields.Find(t.text);
    if (value == nullptr || value->empty()) {
      if (t.has_default) out += t.fallback;
      continue;
    }
    if (escaping_ == TemplateEscaping::kHtml) {
      AppendHtmlEscaped(*value, out);
    } else {
      out += *value;
    }
  }
}

std::string CompiledTemplate::Render(const MergeFields& fields) const {
  std::string out;
  RenderTo(fields, out);
  return out;
}

std::vector<UnknownField> CompiledTemplate::UnknownFields(
    const std::set<std::string, std::less<>>& known) const {
  std::vector<UnknownField> unknown;
  for (const Token& t : tokens_) {
    if (!t.is_field || t.text == kEmailField || t.text == kUnsubscribeUrlField) continue;
    if (known.contains(t.text)) continue;
    unknown.push_back({t.text, t.position, t.has_default,
                       fmt::format("{}: unknown merge field \"{}\" at offset {}{}", name_, t.text,
                                   t.position, t.has_default ? " (has a default)" : "")});
  }
  return unknown;
}

std::set<std::string, std::less<>> CompiledTemplate::FieldNames() const {
  std::set<std::string, std::less<>> names;
  for (const Token& t : tokens_) {
    if (t.is_field) names.insert(t.text);
  }
  return names;
}

}  // namespace mailer::sender
