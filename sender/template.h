// Campaign templates with {{field}} merge fields: compiled once per campaign
// into a token list, rendered per recipient without re-parsing.
//
// Syntax: `{{name}}` inserts a merge field; `{{name|default}}` inserts the
// default when the field is missing or empty. Names are letters, digits, '_',
// '-' and '.', starting with a letter or '_'; spaces around the name and the
// default are ignored. Everything else is literal text; there is no escape for
// a literal "{{". Defaults are template text: in an HTML template they are
// written as the author wrote them, while field values are HTML-escaped.
#pragma once

#include <cstddef>
#include <initializer_list>
#include <set>
#include <stdexcept>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace mailer::sender {

// How field values are written into the rendered text.
enum class TemplateEscaping {
  kNone,  // subject and text parts
  kHtml,  // HTML parts: & < > " ' become entities
};

// The merge field names every recipient has besides its own attributes.
inline constexpr std::string_view kEmailField = "email";
inline constexpr std::string_view kUnsubscribeUrlField = "unsubscribe_url";

// A malformed template: unclosed "{{", empty or invalid field name. what()
// says which template, the byte offset and the problem.
class TemplateSyntaxError : public std::invalid_argument {
 public:
  TemplateSyntaxError(std::string message, std::size_t position)
      : std::invalid_argument(std::move(message)), position_(position) {}
  // Byte offset of the offending "{{" in the template source.
  std::size_t position() const { return position_; }

 private:
  std::size_t position_;
};

// One use of a merge field that is not in the known set.
struct UnknownField {
  std::string name;
  std::size_t position;  // byte offset of its "{{"
  bool has_default;      // renders its default for everyone, likely a typo
  std::string message;   // e.g. `subject: unknown merge field "frist_name" at offset 6`
};

// The values one recipient's merge fields take. Attribute names shadow
// nothing: `email` and `unsubscribe_url` always come from the delivery.
class MergeFields {
 public:
  MergeFields() = default;
  explicit MergeFields(std::unordered_map<std::string, std::string> attributes)
      : attributes_(std::move(attributes)) {}
  MergeFields(std::initializer_list<std::pair<const std::string, std::string>> attributes)
      : attributes_(attributes) {}

  // Builds fields from a JSON object text (the recipient's attributes):
  // strings as they are, numbers and booleans as JSON writes them, null as
  // missing, nested values as compact JSON. Throws std::invalid_argument when
  // the text is not a JSON object.
  static MergeFields FromJsonObject(std::string_view json_text);

  void Set(std::string name, std::string value) { attributes_[std::move(name)] = std::move(value); }
  void SetEmail(std::string email) { email_ = std::move(email); }
  void SetUnsubscribeUrl(std::string url) { unsubscribe_url_ = std::move(url); }

  // The field's value, or nullptr when the recipient has none.
  const std::string* Find(std::string_view name) const;

 private:
  std::unordered_map<std::string, std::string> attributes_;
  std::string email_;
  std::string unsubscribe_url_;
};

// A compiled template. Immutable after Compile; safe to render from several
// threads at once.
class CompiledTemplate {
 public:
  // Parses `source`. `name` ("subject", "text", "html") appears in error
  // messages. Throws TemplateSyntaxError on malformed input.
  static CompiledTemplate Compile(std::string_view source, std::string_view name,
                                  TemplateEscaping escaping);

  // Appends the rendered text for one recipient to `out`.
  void RenderTo(const MergeFields& fields, std::string& out) const;
  std::string Render(const MergeFields& fields) const;

  // Every use of a field not in `known` (the list's attribute names; `email`
  // and `unsubscribe_url` are always known), in source order. Empty when all
  // fields are known.
  std::vector<UnknownField> UnknownFields(const std::set<std::string, std::less<>>& known) const;

  // Distinct field names used, sorted.
  std::set<std::string, std::less<>> FieldNames() const;

  const std::string& name() const { return name_; }
  TemplateEscaping escaping() const { return escaping_; }
  bool empty() const { return tokens_.empty(); }

 private:
  struct Token {
    bool is_field;
    std::string text;  // literal text, or the field name
    bool has_default;
    std::string fallback;  // the default, when has_default
    std::size_t position;  // byte offset in the source
  };

  std::string name_;
  TemplateEscaping escaping_ = TemplateEscaping::kNone;
  std::vector<Token> tokens_;
  std::size_t literal_size_ = 0;  // to reserve output space
};

}  // namespace mailer::sender
