#include "node_cache.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

namespace vmhost::scheduler {
namespace {

constexpr int64_t kMax = std::numeric_limits<int64_t>::max();

int64_t clampToInt64(uint64_t v) { return v > static_cast<uint64_t>(kMax) ? kMax : int64_t(v); }

// capacity * ratio, rounded to the nearest unit. Rounding (not truncating)
// matters: Float32 ratios are inexact, and 1000 * 0.7f = 699.99998 must give
// 700 millicores, not 699.
int64_t allocatable(uint64_t capacity, double ratio) {
  if (ratio == 1.0) return clampToInt64(capacity);  // exact for any capacity
  double v = std::round(static_cast<double>(capacity) * ratio);
  // 2^63 is exactly representable; anything at or above it saturates.
  if (!(v < 9223372036854775808.0)) return kMax;
  return static_cast<int64_t>(v);
}

std::string_view view(capnp::Text::Reader text) { return {text.cStr(), text.size()}; }

}  // namespace

std::string_view reasonText(Reason reason) {
  switch (reason) {
    case Reason::kNotReady:
      return "node not ready";
    case Reason::kUnschedulable:
      return "node unschedulable";
    case Reason::kSelectorMismatch:
      return "node selector mismatch";
    case Reason::kInsufficientCpu:
      return "insufficient cpu";
    case Reason::kInsufficientMemory:
      return "insufficient memory";
  }
  return "unknown";
}

// --- updates -----------------------------------------------------------------

void NodeCache::apply(schema::ScheduleRequest::Reader request) {
  auto nodes = request.getNodes();
  if (request.getFullSync()) {
    clear();
    slotByName_.reserve(nodes.size());
  } else {
    for (auto name : request.getRemovedNodes()) remove(view(name));
  }
  for (auto node : nodes) upsert(node);
  if (!addedSlots_.empty() || removedAny_) reorder();
  // Only now may freed slots take new nodes: reorder() finds removed nodes'
  // entries in byName_ by their slot no longer being live, which a slot
  // reused within the same apply() would be again (leaving a stale entry).
  freeSlots_.insert(freeSlots_.end(), releasedSlots_.begin(), releasedSlots_.end());
  releasedSlots_.clear();
}

void NodeCache::clear() {
  name_.clear();
  state_.clear();
  cpuFree_.clear();
  memFree_.clear();
  cpuInv_.clear();
  memInv_.clear();
  rank_.clear();
  labels_.clear();
  slotByName_.clear();
  freeSlots_.clear();
  releasedSlots_.clear();
  addedSlots_.clear();
  removedAny_ = false;
  byName_.clear();
  // A full sync is also when the label dictionary sheds labels no node has.
  labelIds_.clear();
  postings_.clear();
}

uint32_t NodeCache::allocateSlot() {
  if (!freeSlots_.empty()) {
    uint32_t slot = freeSlots_.back();
    freeSlots_.pop_back();
    return slot;
  }
  name_.emplace_back();
  state_.push_back(0);
  cpuFree_.push_back(kUnusable);
  memFree_.push_back(0);
  cpuInv_.push_back(0);
  memInv_.push_back(0);
  rank_.push_back(0);
  labels_.emplace_back();
  return static_cast<uint32_t>(name_.size() - 1);
}

void NodeCache::upsert(schema::NodeInfo::Reader node) {
  std::string_view name = view(node.getName());
  uint32_t slot;
  if (auto it = slotByName_.find(name); it != slotByName_.end()) {
    slot = it->second;
  } else {
    slot = allocateSlot();
    name_[slot].assign(name);
    slotByName_.emplace(name_[slot], slot);
    addedSlots_.push_back(slot);
  }

  state_[slot] = static_cast<uint8_t>(kLive | (node.getReady() ? kReady : 0) |
                                      (node.getSchedulable() ? kSchedulable : 0));
  // Ratios are validated finite and >= 0 by the caller; 0 means the default.
  double cpuRatio = node.getCpuAllocationRatio() > 0 ? node.getCpuAllocationRatio() : defaults_.cpu;
  double memRatio =
      node.getMemoryAllocationRatio() > 0 ? node.getMemoryAllocationRatio() : defaults_.memory;
  auto capacity = node.getCapacity();
  auto allocated = node.getAllocated();
  int64_t cpuAlloc = allocatable(capacity.getCpuMillis(), cpuRatio);
  int64_t memAlloc = allocatable(capacity.getMemoryBytes(), memRatio);
  // Both terms are in [0, 2^63), so the difference cannot overflow. A node
  // that may not take VMs gets a free cpu no demand fits (demands are >= 0),
  // so the placement scan needs no separate state check; the reasons never
  // read it, as they stop at "not ready" / "unschedulable" first.
  cpuFree_[slot] =
      state_[slot] == kUsable ? cpuAlloc - clampToInt64(allocated.getCpuMillis()) : kUnusable;
  memFree_[slot] = memAlloc - clampToInt64(allocated.getMemoryBytes());
  cpuInv_[slot] = cpuAlloc > 0 ? 1.0 / static_cast<double>(cpuAlloc) : 0.0;
  memInv_[slot] = memAlloc > 0 ? 1.0 / static_cast<double>(memAlloc) : 0.0;

  // Most updates only move `allocated`: touch the postings only when the
  // label set really changed.
  internLabels(node.getLabels(), idScratch_);
  std::vector<uint32_t>& current = labels_[slot];
  if (current != idScratch_) {
    for (uint32_t id : current) removePosting(id, slot);
    for (uint32_t id : idScratch_) postings_[id].push_back(slot);
    current.assign(idScratch_.begin(), idScratch_.end());
  }
}

void NodeCache::remove(std::string_view name) {
  auto it = slotByName_.find(name);
  if (it == slotByName_.end()) return;  // already gone: removal is idempotent
  uint32_t slot = it->second;
  slotByName_.erase(it);
  for (uint32_t id : labels_[slot]) removePosting(id, slot);
  labels_[slot].clear();
  state_[slot] = 0;  // not live: every filter skips it
  cpuFree_[slot] = kUnusable;
  name_[slot].clear();
  releasedSlots_.push_back(slot);
  removedAny_ = true;
}

void NodeCache::removePosting(uint32_t label, uint32_t slot) {
  auto& list = postings_[label];
  auto it = std::find(list.begin(), list.end(), slot);
  if (it != list.end()) {
    *it = list.back();  // order within a posting list does not matter
    list.pop_back();
  }
}

const std::string& NodeCache::labelKey(capnp::Text::Reader key, capnp::Text::Reader value) {
  // Length-prefixed, so that no (key, value) pair can spell another's key
  // whatever bytes the texts hold.
  uint32_t keySize = static_cast<uint32_t>(key.size());
  keyScratch_.clear();
  keyScratch_.append(reinterpret_cast<const char*>(&keySize), sizeof(keySize));
  keyScratch_.append(key.cStr(), key.size());
  keyScratch_.append(value.cStr(), value.size());
  return keyScratch_;
}

void NodeCache::internLabels(capnp::List<schema::Label>::Reader labels,
                             std::vector<uint32_t>& ids) {
  ids.clear();
  // A node has one value per key: when a key repeats, the later entry wins.
  labelScratch_.clear();
  for (uint32_t i = 0; i < labels.size(); ++i) {
    labelScratch_.push_back({labels[i].getKey(), labels[i].getValue(), i});
  }
  std::sort(labelScratch_.begin(), labelScratch_.end(), [](const LabelRef& a, const LabelRef& b) {
    int c = view(a.key).compare(view(b.key));
    return c != 0 ? c < 0 : a.index > b.index;
  });
  for (size_t i = 0; i < labelScratch_.size(); ++i) {
    if (i > 0 && view(labelScratch_[i].key) == view(labelScratch_[i - 1].key)) continue;
    const std::string& key = labelKey(labelScratch_[i].key, labelScratch_[i].value);
    auto it = labelIds_.find(key);
    if (it == labelIds_.end()) {
      it = labelIds_.emplace(key, static_cast<uint32_t>(postings_.size())).first;
      postings_.emplace_back();
    }
    ids.push_back(it->second);
  }
  std::sort(ids.begin(), ids.end());
}

// Keeps byName_ (live slots in name order) and rank_ current after nodes came
// or went: drop the dead, sort only the new, merge. O(n + k log k) for k new
// nodes, so a delta adding one node does not pay for a full sort.
void NodeCache::reorder() {
  if (removedAny_) {
    std::erase_if(byName_, [&](uint32_t slot) { return (state_[slot] & kLive) == 0; });
  }
  auto byNameLess = [&](uint32_t a, uint32_t b) { return name_[a] < name_[b]; };
  std::sort(addedSlots_.begin(), addedSlots_.end(), byNameLess);
  size_t middle = byName_.size();
  byName_.insert(byName_.end(), addedSlots_.begin(), addedSlots_.end());
  std::inplace_merge(byName_.begin(), byName_.begin() + static_cast<ptrdiff_t>(middle),
                     byName_.end(), byNameLess);
  for (uint32_t i = 0; i < byName_.size(); ++i) rank_[byName_[i]] = i;
  addedSlots_.clear();
  removedAny_ = false;
}

// --- placement ----------------------------------------------------------------

void NodeCache::resolve(capnp::List<schema::Label>::Reader selector, Selector& out) {
  out.labelIds.clear();
  out.impossible = false;
  for (auto label : selector) {
    auto it = labelIds_.find(labelKey(label.getKey(), label.getValue()));
    if (it == labelIds_.end() || postings_[it->second].empty()) {
      out.impossible = true;  // no node carries this label
      out.labelIds.clear();
      return;
    }
    out.labelIds.push_back(it->second);
  }
  std::sort(out.labelIds.begin(), out.labelIds.end());
  out.labelIds.erase(std::unique(out.labelIds.begin(), out.labelIds.end()), out.labelIds.end());
  // Walk the rarest label's nodes; check the others per node.
  std::sort(out.labelIds.begin(), out.labelIds.end(),
            [&](uint32_t a, uint32_t b) { return postings_[a].size() < postings_[b].size(); });
}

bool NodeCache::matches(uint32_t slot, const Selector& selector) const {
  if (selector.impossible) return false;
  const auto& have = labels_[slot];
  for (uint32_t id : selector.labelIds) {
    if (!std::binary_search(have.begin(), have.end(), id)) return false;
  }
  return true;
}

Selection NodeCache::best(const Selector& selector, Demand demand, Strategy strategy) const {
  Selection out;
  if (selector.impossible) return out;
  const int64_t* cpuFree = cpuFree_.data();
  const int64_t* memFree = memFree_.data();
  const double* cpuInv = cpuInv_.data();
  const double* memInv = memInv_.data();
  const uint32_t* rank = rank_.data();
  const bool pack = strategy == Strategy::kMostAllocated;

  // `free` is the sum over cpu and memory of the fraction of allocatable left
  // after placement; spread maximizes it, pack minimizes it. Identical nodes
  // compute bit-identical values, so exact equality is the tie.
  double bestKey = -std::numeric_limits<double>::infinity();
  double bestFree = 0;
  uint32_t bestRank = UINT32_MAX;
  uint32_t feasible = 0;
  auto consider = [&](uint32_t i) {
    if (cpuFree[i] < demand.cpuMillis || memFree[i] < demand.memoryBytes) {
      return;
    }
    ++feasible;
    double free = static_cast<double>(cpuFree[i] - demand.cpuMillis) * cpuInv[i] +
                  static_cast<double>(memFree[i] - demand.memoryBytes) * memInv[i];
    double key = pack ? -free : free;
    if (key > bestKey || (key == bestKey && rank[i] < bestRank)) {
      bestKey = key;
      bestFree = free;
      bestRank = rank[i];
      out.slot = i;
    }
  };

  if (selector.labelIds.empty()) {
    const uint32_t n = static_cast<uint32_t>(state_.size());
    for (uint32_t i = 0; i < n; ++i) consider(i);
  } else {
    const auto& first = postings_[selector.labelIds.front()];
    if (selector.labelIds.size() == 1) {
      for (uint32_t i : first) consider(i);
    } else {
      for (uint32_t i : first) {
        if (matches(i, selector)) consider(i);
      }
    }
  }

  out.feasibleNodes = feasible;
  if (out.slot != Selection::kNone) {
    double mean = bestFree / 2;  // over cpu and memory
    double score = pack ? 1.0 - mean : mean;
    out.score = std::llround(std::clamp(score, 0.0, 1.0) * 1e6);
  }
  return out;
}

void NodeCache::assume(uint32_t slot, Demand demand) {
  // The node fit, so free >= demand and neither subtraction can overflow.
  cpuFree_[slot] -= demand.cpuMillis;
  memFree_[slot] -= demand.memoryBytes;
}

bool NodeCache::firstFailure(uint32_t slot, const Selector& selector, Demand demand,
                             Reason& reason) const {
  uint8_t s = state_[slot];
  if ((s & kReady) == 0) {
    reason = Reason::kNotReady;
  } else if ((s & kSchedulable) == 0) {
    reason = Reason::kUnschedulable;
  } else if (!matches(slot, selector)) {
    reason = Reason::kSelectorMismatch;
  } else if (cpuFree_[slot] < demand.cpuMillis) {
    reason = Reason::kInsufficientCpu;
  } else if (memFree_[slot] < demand.memoryBytes) {
    reason = Reason::kInsufficientMemory;
  } else {
    return false;
  }
  return true;
}

std::array<uint32_t, kReasonCount> NodeCache::countReasons(const Selector& selector,
                                                           Demand demand) const {
  std::array<uint32_t, kReasonCount> counts{};
  Reason reason;
  for (uint32_t slot : byName_) {
    if (firstFailure(slot, selector, demand, reason)) ++counts[static_cast<size_t>(reason)];
  }
  return counts;
}

void NodeCache::forEachFailure(const Selector& selector, Demand demand,
                               const std::function<void(const std::string&, Reason)>& fn) const {
  Reason reason;
  for (uint32_t slot : byName_) {
    if (firstFailure(slot, selector, demand, reason)) fn(name_[slot], reason);
  }
}

}  // namespace vmhost::scheduler
