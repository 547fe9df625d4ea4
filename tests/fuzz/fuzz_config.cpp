// libFuzzer target: the run config path of `ember fit --config FILE --set …` — JSON parse with
// comments and trailing commas, the schema check with defaults filled, the trainer options and
// the plugin references read from the checked config. An input that begins with "--set " has
// its first line applied as an override (KEY.PATH=VALUE) to the JSON that follows. A config error is an expected outcome; a crash, a
// sanitizer report or an exception that is not a std::exception is a finding.
#include <ember/run_config.hpp>
#include <ember/trainer.hpp>

#include <cstddef>
#include <cstdint>
#include <string_view>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static const boost::json::value schema = ember::config::parse(ember::run_config_schema(), "schema");
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  try {
    std::string_view json_text = text, assignment;
    if (text.substr(0, 6) == "--set ") {
      const auto nl = text.find('\n');
      assignment = text.substr(6, nl == std::string_view::npos ? std::string_view::npos : nl - 6);
      json_text = nl == std::string_view::npos ? std::string_view() : text.substr(nl + 1);
    }
    boost::json::value cfg = ember::config::parse(json_text, "fuzz.json");
    if (!assignment.empty()) ember::config::apply_override(cfg, assignment);
    if (!cfg.is_object()) return 0;
    ember::config::check(cfg, schema, "fuzz.json", "", /*fill_defaults=*/true);
    auto& root = cfg.as_object();
    if (const auto* t = root.if_contains("trainer"); t && t->is_object())
      (void)ember::TrainerOptions::from_json(
          t->as_object(), root.contains("seed_everything") ? root.at("seed_everything") : boost::json::value());
    (void)ember::all_plugin_refs(cfg);
    (void)boost::json::serialize(cfg);  // what `ember config` prints
  } catch (const std::exception&) {
  }
  return 0;
}
