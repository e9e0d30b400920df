// The node cache and placement engine shared by the `default` and `binpack`
// scheduler plugins.
//
// Placement runs once per VM against every cached node, so the cache is laid
// out for that scan rather than for updates:
//  - Nodes live in slots, and what the filters and the score read is held as
//    struct-of-arrays indexed by slot (state byte, free cpu/memory, inverse
//    allocatable), so the scan touches a few dense arrays and no strings.
//  - Labels are interned to integer ids once, when a node is upserted. Each
//    label has a posting list of the slots carrying it, so a VM with a node
//    selector only visits the nodes carrying its rarest selector label and
//    checks the rest by binary search in the node's sorted label ids.
//  - Ties are broken by node name through a precomputed name rank, so the
//    scan never compares strings.
//
// Strings are only touched when nodes change and when writing the result.
#pragma once

#include <vmhost/plugin.hpp>

#include <array>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace vmhost::scheduler {

// How feasible nodes are ranked.
enum class Strategy : uint8_t {
  kLeastAllocated,  // spread: most room left after placement (kube LeastAllocated)
  kMostAllocated,   // pack: least room left after placement (kube MostAllocated)
};

// Why a node cannot take a VM, in the order the filters run. A node is
// counted once, under the first filter it fails.
enum class Reason : uint8_t {
  kNotReady,
  kUnschedulable,
  kSelectorMismatch,
  kInsufficientCpu,
  kInsufficientMemory,
};
inline constexpr size_t kReasonCount = 5;

// The text of a reason as it appears in Unschedulable messages.
std::string_view reasonText(Reason reason);

// The plugin-wide overcommit, used for nodes whose own ratio is 0.
struct AllocationRatios {
  double cpu = 1.0;
  double memory = 1.0;
};

// What a VM asks for, clamped into the signed range the cache computes in.
struct Demand {
  int64_t cpuMillis = 0;
  int64_t memoryBytes = 0;
};

// A VM's node selector resolved against the label dictionary.
struct Selector {
  std::vector<uint32_t> labelIds;  // distinct ids, rarest label first
  bool impossible = false;         // some label is on no node: nothing matches
};

struct Selection {
  static constexpr uint32_t kNone = UINT32_MAX;
  uint32_t slot = kNone;  // kNone: no feasible node
  int64_t score = 0;      // 0..1,000,000, see NodeCache::best
  uint32_t feasibleNodes = 0;
};

// Not thread-safe: the host serializes calls to a plugin instance that does
// not declare VMHOST_CAP_THREAD_SAFE.
class NodeCache {
 public:
  explicit NodeCache(AllocationRatios defaults) : defaults_(defaults) {}

  // Applies the node part of a request, as sdk/schema/scheduler.capnp says:
  // with fullSync, `nodes` replaces the cache (removedNodes is then
  // meaningless and ignored); otherwise `removedNodes` are dropped (unknown
  // names are ignored) and then `nodes` are upserted. Hence a name listed in
  // both ends up present, and a name listed twice in `nodes` takes the later
  // entry. Input must have been validated (node names non-empty, ratios
  // finite and >= 0).
  void apply(schema::ScheduleRequest::Reader request);

  // Number of nodes in the cache.
  uint32_t size() const { return static_cast<uint32_t>(byName_.size()); }

  // Resolves a node selector into `out` (reused between calls to avoid
  // allocating per VM).
  void resolve(capnp::List<schema::Label>::Reader selector, Selector& out);

  // Filters every cached node for `demand` and `selector` and picks the best
  // by `strategy`; equal scores go to the node whose name sorts first.
  // Selection::score is the mean over cpu and memory of the fraction of
  // allocatable left free (kLeastAllocated) or in use (kMostAllocated) once
  // the VM is placed, in millionths.
  Selection best(const Selector& selector, Demand demand, Strategy strategy) const;

  // Adds `demand` to a node's allocation ("assume" the placement until the
  // host's next update of the node says otherwise).
  void assume(uint32_t slot, Demand demand);

  // Why each node fails `demand`: counts per Reason (indexed by its value).
  // Nodes that pass every filter are not counted.
  std::array<uint32_t, kReasonCount> countReasons(const Selector& selector, Demand demand) const;

  // Calls fn(name, reason) for every node that fails, in name order.
  void forEachFailure(const Selector& selector, Demand demand,
                      const std::function<void(const std::string&, Reason)>& fn) const;

  const std::string& name(uint32_t slot) const { return name_[slot]; }

 private:
  // state_ bits. A slot is usable (may take a VM) when all three are set.
  static constexpr uint8_t kLive = 1, kReady = 2, kSchedulable = 4;
  static constexpr uint8_t kUsable = kLive | kReady | kSchedulable;
  // cpuFree_ of a slot that is not usable: below any demand.
  static constexpr int64_t kUnusable = INT64_MIN;

  // Heterogeneous lookup, so that finding a name or label costs no allocation.
  struct StringHash {
    using is_transparent = void;
    size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
  };
  using StringMap = std::unordered_map<std::string, uint32_t, StringHash, std::equal_to<>>;

  void clear();
  void upsert(schema::NodeInfo::Reader node);
  void remove(std::string_view name);
  uint32_t allocateSlot();
  void internLabels(capnp::List<schema::Label>::Reader labels, std::vector<uint32_t>& ids);
  // The dictionary key of a label; written into keyScratch_.
  const std::string& labelKey(capnp::Text::Reader key, capnp::Text::Reader value);
  void removePosting(uint32_t label, uint32_t slot);
  void reorder();
  bool matches(uint32_t slot, const Selector& selector) const;
  // The first filter `slot` fails, or false when it passes all.
  bool firstFailure(uint32_t slot, const Selector& selector, Demand demand, Reason& reason) const;

  AllocationRatios defaults_;

  // Per-slot data (struct of arrays). Free = allocatable - allocated, and
  // may be negative when the host reports a node above its allocatable;
  // cpuFree_ is kUnusable for a slot that is not usable.
  std::vector<std::string> name_;
  std::vector<uint8_t> state_;
  std::vector<int64_t> cpuFree_;
  std::vector<int64_t> memFree_;
  std::vector<double> cpuInv_;                 // 1 / allocatable cpu, 0 when allocatable is 0
  std::vector<double> memInv_;                 // 1 / allocatable memory, likewise
  std::vector<uint32_t> rank_;                 // position of the node's name in name order
  std::vector<std::vector<uint32_t>> labels_;  // sorted label ids

  StringMap slotByName_;
  std::vector<uint32_t> freeSlots_;      // reusable slots
  std::vector<uint32_t> releasedSlots_;  // freed by this apply(); reusable after it
  std::vector<uint32_t> addedSlots_;     // new names in this apply(), to merge into byName_
  bool removedAny_ = false;
  std::vector<uint32_t> byName_;  // live slots in name order

  // Label dictionary: (key, value) -> id, and each id's slots. Ids of labels
  // no node carries any more are kept until the next fullSync.
  StringMap labelIds_;
  std::vector<std::vector<uint32_t>> postings_;

  // Scratch, reused between calls.
  std::string keyScratch_;
  std::vector<uint32_t> idScratch_;
  struct LabelRef {
    capnp::Text::Reader key;
    capnp::Text::Reader value;
    uint32_t index;
  };
  std::vector<LabelRef> labelScratch_;
};

}  // namespace vmhost::scheduler
