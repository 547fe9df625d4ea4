// Interface tables adopted one way: each table a plugin hands over is copied up to its
// struct_size into a host-side struct and its required slots checked, refusing with the plugin,
// interface and slot named. Part of ember/loader.hpp.
#pragma once

#include <ember/loader/library.hpp>

namespace ember {

// --- Interface tables, adopted one way ----------------------------------------------------------
// Every table a plugin hands over is copied into a full-size host-side struct: a slot the plugin's
// struct_size does not wholly cover stays null (an older plugin lacks the newer slots; a slot cut
// in half is not half-read), and a table whose required slot is null is refused, naming the
// plugin, the interface and the slot, before the host calls anything in it. "Required" is the
// contract block's "Required: yes" in abi/*.h.

struct SlotSpec {
  const char* name;
  std::size_t offset;
  std::size_t size;
  bool required;
  bool is_str;  // an ember_str_t: "present" means non-empty
};

template <class Table>
struct InterfaceSpec {};  // specialised with id and slots for each table the host adopts

#define EMBER_SLOT_(T, field, req) \
  SlotSpec { #field, offsetof(T, field), sizeof(T::field), req, std::is_same_v<decltype(T::field), ember_str_t> }

template <>
struct InterfaceSpec<ember_callbacks_v1_t> {
  static constexpr const char* id = EMBER_CALLBACKS_V1;
  static constexpr SlotSpec slots[] = {
#define EMBER_HOOK(name, since, doc) EMBER_SLOT_(ember_callbacks_v1_t, name, false),
#include <ember/abi/hooks.def>
  };
};
template <>
struct InterfaceSpec<ember_logger_v1_t> {
  static constexpr const char* id = EMBER_LOGGER_V1;
  static constexpr SlotSpec slots[] = {
      EMBER_SLOT_(ember_logger_v1_t, log_hyperparams, false), EMBER_SLOT_(ember_logger_v1_t, log_metrics, true),
      EMBER_SLOT_(ember_logger_v1_t, after_save_checkpoint, false), EMBER_SLOT_(ember_logger_v1_t, save, false),
      EMBER_SLOT_(ember_logger_v1_t, finalize, false)};
};
template <>
struct InterfaceSpec<ember_state_v1_t> {
  static constexpr const char* id = EMBER_STATE_V1;
  static constexpr SlotSpec slots[] = {EMBER_SLOT_(ember_state_v1_t, state_dict, true),
                                       EMBER_SLOT_(ember_state_v1_t, load_state_dict, true)};
};
template <>
struct InterfaceSpec<ember_storage_v1_t> {
  static constexpr const char* id = EMBER_STORAGE_V1;
  static constexpr SlotSpec slots[] = {
      EMBER_SLOT_(ember_storage_v1_t, schemes, true),    EMBER_SLOT_(ember_storage_v1_t, open_read, true),
      EMBER_SLOT_(ember_storage_v1_t, read, true),       EMBER_SLOT_(ember_storage_v1_t, open_write, true),
      EMBER_SLOT_(ember_storage_v1_t, write, true),      EMBER_SLOT_(ember_storage_v1_t, commit, true),
      EMBER_SLOT_(ember_storage_v1_t, close, true),      EMBER_SLOT_(ember_storage_v1_t, stat, true),
      EMBER_SLOT_(ember_storage_v1_t, list, true),       EMBER_SLOT_(ember_storage_v1_t, remove, true)};
};
template <>
struct InterfaceSpec<ember_media_v1_t> {
  static constexpr const char* id = EMBER_MEDIA_V1;
  static constexpr SlotSpec slots[] = {EMBER_SLOT_(ember_media_v1_t, log_image, false),
                                       EMBER_SLOT_(ember_media_v1_t, log_table, false),
                                       EMBER_SLOT_(ember_media_v1_t, log_histogram, false)};
};
template <>
struct InterfaceSpec<ember_checkpoints_v1_t> {
  static constexpr const char* id = EMBER_CHECKPOINTS_V1;
  static constexpr SlotSpec slots[] = {EMBER_SLOT_(ember_checkpoints_v1_t, resolve, true)};
};
#undef EMBER_SLOT_

template <class Table, class = void>
struct is_adopted : std::false_type {};
template <class Table>
struct is_adopted<Table, std::void_t<decltype(InterfaceSpec<Table>::id)>> : std::true_type {};

// Copy the table get_interface returned into out (full size, struct_size set to the host's).
// Returns why it cannot be used, or empty.
template <class Table>
std::string adopt_table(const void* raw, Table& out) {
  using Spec = InterfaceSpec<Table>;
  const auto* src = static_cast<const unsigned char*>(raw);
  std::uint32_t size = 0;
  std::memcpy(&size, src, sizeof size);
  std::memset(&out, 0, sizeof out);
  const std::size_t header = Spec::slots[0].offset;  // struct_size and its padding
  if (size < header)
    return "struct_size is " + std::to_string(size) + " bytes, smaller than the table's own " +
           std::to_string(header) + "-byte header";
  auto* dst = reinterpret_cast<unsigned char*>(&out);
  for (const SlotSpec& slot : Spec::slots) {
    const bool inside = slot.offset + slot.size <= size;
    if (inside) std::memcpy(dst + slot.offset, src + slot.offset, slot.size);
    if (!slot.required) continue;
    bool present = false;
    if (slot.is_str) {
      ember_str_t str;
      std::memcpy(&str, dst + slot.offset, sizeof str);
      present = str.data && str.size;
    } else {
      for (std::size_t i = 0; i < slot.size && !present; ++i) present = dst[slot.offset + i] != 0;
    }
    if (present) continue;
    if (!inside)
      return std::string("required slot '") + slot.name + "' lies outside the table: struct_size is " +
             std::to_string(size) + " bytes, the slot ends at byte " + std::to_string(slot.offset + slot.size);
    return std::string("required slot '") + slot.name + "' is " + (slot.is_str ? "empty" : "null");
  }
  out.struct_size = sizeof out;
  return {};
}

}  // namespace ember
