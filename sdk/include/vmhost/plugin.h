/*
 * vmhost plugin ABI — the whole binary contract between the vmhost host and a
 * plugin shared object.
 *
 * This header compiles as C11 and as C++. Only plain C types and bytes cross
 * it: no C++ types, no exceptions, no shared allocator. Data is exchanged as
 * Cap'n Proto messages (schemas in sdk/schema/), serialized as flat,
 * 8-byte-aligned word arrays.
 *
 * Stability rules (a test pins a hash of this file, so any edit is deliberate):
 *  - Never change the meaning, order or type of an existing declaration.
 *  - New fields go at the end of a struct; `struct_size` lets each side see
 *    which fields the other knows.
 *  - A change a plugin built against an older header could not survive bumps
 *    VMHOST_ABI_VERSION; the host keeps accepting older versions as long as it
 *    can, and negotiation picks the highest version both sides support.
 *
 * Naming: `*_fn` members of vmhost_plugin_descriptor are implemented by the
 * plugin and called by the host; members of vmhost_host_callbacks are
 * implemented by the host and called by the plugin.
 */
#ifndef VMHOST_PLUGIN_H
#define VMHOST_PLUGIN_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The ABI versions this header describes. A host built with this header
 * offers [VMHOST_ABI_VERSION_MIN, VMHOST_ABI_VERSION]. */
#define VMHOST_ABI_VERSION_MIN 1u
#define VMHOST_ABI_VERSION 1u

/* The one symbol every plugin exports. */
#define VMHOST_PLUGIN_ENTRY_SYMBOL "vmhost_plugin_entry"

#if defined(_WIN32)
#define VMHOST_PLUGIN_EXPORT __declspec(dllexport)
#else
#define VMHOST_PLUGIN_EXPORT __attribute__((visibility("default")))
#endif

/* Plugin kinds: one slot each in the host config. */
typedef enum vmhost_plugin_kind {
  VMHOST_KIND_INVALID = 0,
  VMHOST_KIND_SCHEDULER = 1,
  VMHOST_KIND_STORAGE = 2,
  VMHOST_KIND_NETWORK = 3,
  VMHOST_KIND_MIGRATION = 4
} vmhost_plugin_kind;

/* Status codes, numbered as gRPC / google.rpc.Code so that they map 1:1 onto
 * the codes operators already know. */
typedef enum vmhost_status {
  VMHOST_OK = 0,
  VMHOST_ERR_CANCELLED = 1,
  VMHOST_ERR_UNKNOWN = 2,
  VMHOST_ERR_INVALID_ARGUMENT = 3,
  VMHOST_ERR_DEADLINE_EXCEEDED = 4,
  VMHOST_ERR_NOT_FOUND = 5,
  VMHOST_ERR_ALREADY_EXISTS = 6,
  VMHOST_ERR_PERMISSION_DENIED = 7,
  VMHOST_ERR_RESOURCE_EXHAUSTED = 8,
  VMHOST_ERR_FAILED_PRECONDITION = 9,
  VMHOST_ERR_ABORTED = 10,
  VMHOST_ERR_OUT_OF_RANGE = 11,
  VMHOST_ERR_UNIMPLEMENTED = 12,
  VMHOST_ERR_INTERNAL = 13,
  VMHOST_ERR_UNAVAILABLE = 14,
  VMHOST_ERR_DATA_LOSS = 15
} vmhost_status;

/* Method ids, per kind. Request and response types are named in
 * the sdk/schema/ files next to each method. Ids are never reused. */
typedef enum vmhost_method {
  /* scheduler */
  VMHOST_METHOD_SCHEDULER_SCHEDULE = 1, /* ScheduleRequest -> ScheduleResult */
  /* storage */
  VMHOST_METHOD_STORAGE_PREPARE = 1, /* VolumeRequest -> VolumeAttachment */
  VMHOST_METHOD_STORAGE_RELEASE = 2, /* VolumeRelease -> VolumeReleased */
  /* network */
  VMHOST_METHOD_NETWORK_ATTACH = 1, /* InterfaceRequest -> InterfaceAttachment */
  VMHOST_METHOD_NETWORK_DETACH = 2, /* InterfaceRelease -> InterfaceReleased */
  /* migration */
  VMHOST_METHOD_MIGRATION_PLAN = 1,    /* MigrationRequest -> MigrationPlan */
  VMHOST_METHOD_MIGRATION_PROGRESS = 2 /* MigrationProgress -> MigrationDecision */
} vmhost_method;

/* Capability flags (vmhost_plugin_descriptor.capabilities). Bits 0-15 are
 * common, 16-31 per kind, 32-63 reserved. */
#define VMHOST_CAP_THREAD_SAFE (1ull << 0) /* invoke may run concurrently on one instance */
#define VMHOST_CAP_SCHEDULER_NODE_CACHE (1ull << 16) /* accepts delta node lists */
/* storage: volumes reachable from every node, so no copy on migration */
#define VMHOST_CAP_STORAGE_SHARED (1ull << 16)
#define VMHOST_CAP_STORAGE_RESIZE (1ull << 17)
#define VMHOST_CAP_NETWORK_HOTPLUG (1ull << 16)
#define VMHOST_CAP_MIGRATION_POSTCOPY (1ull << 16)

/* Error detail. The host owns the storage; the plugin fills it when a call
 * returns anything but VMHOST_OK. `message` must be NUL-terminated UTF-8
 * (truncated to fit). */
#define VMHOST_ERROR_MESSAGE_SIZE 1024
typedef struct vmhost_error {
  int32_t code;      /* a vmhost_status */
  int32_t retryable; /* non-zero: the same call may succeed later */
  char message[VMHOST_ERROR_MESSAGE_SIZE];
} vmhost_error;

/* A response allocated by the plugin. OWNERSHIP: the plugin owns `data`
 * until the host passes this buffer to release_fn, exactly once. `data`
 * is 8-byte aligned and `size` a multiple of 8 (a Cap'n Proto flat array).
 * `opaque` is the plugin's; the host never reads it. */
typedef struct vmhost_buffer {
  const uint8_t* data;
  size_t size;
  void* opaque;
} vmhost_buffer;

/* Opaque plugin instance. */
typedef struct vmhost_instance vmhost_instance;

/* Log levels for vmhost_host_callbacks.log. */
typedef enum vmhost_log_level {
  VMHOST_LOG_DEBUG = 0,
  VMHOST_LOG_INFO = 1,
  VMHOST_LOG_WARNING = 2,
  VMHOST_LOG_ERROR = 3
} vmhost_log_level;

/* Services the host offers a plugin instance. OWNERSHIP: the host owns this
 * table and `host_ctx`; both stay valid until destroy_fn returns. */
typedef struct vmhost_host_callbacks {
  uint32_t struct_size; /* sizeof(vmhost_host_callbacks) as the host knows it */
  void* host_ctx;
  /* `message`: NUL-terminated, borrowed for the duration of the call. May be
   * called from any thread. */
  void (*log)(void* host_ctx, int32_t level, const char* message);
  /* Added in SDK 0.2 (ABI 1; present when struct_size covers it, and then
   * never NULL): progress of a long step inside the current call, e.g. a
   * storage plugin fetching a base image. `vm_uid`: the uid of the VmRef in
   * the request being served; `what`: one line saying what is in progress
   * ("volume root: fetching https://..."); `done` and `total` in bytes, total
   * 0 when unknown. Strings are borrowed for the call. May be called from
   * any thread while the call that it concerns runs; the host rate-limits
   * what it shows, so report as often as convenient. */
  void (*report_progress)(void* host_ctx, const char* vm_uid, const char* what, uint64_t done,
                          uint64_t total);
} vmhost_host_callbacks;

/* What a plugin is and how the host drives it. OWNERSHIP: the plugin owns
 * the descriptor and every string in it; all stay valid while the shared
 * object is loaded (the host never unloads a plugin). */
typedef struct vmhost_plugin_descriptor {
  uint32_t struct_size; /* sizeof(vmhost_plugin_descriptor) as the plugin knows it */
  uint32_t abi_version; /* the version the plugin chose in negotiation */
  int32_t kind;         /* a vmhost_plugin_kind */
  uint32_t reserved0;
  const char* name;        /* [a-z0-9-]{1,63}, e.g. "default" */
  const char* version;     /* the plugin's own version, e.g. "1.2.0" */
  const char* description; /* one line, may be "" */
  uint64_t capabilities;   /* VMHOST_CAP_* */

  /* Creates an instance. `config`/`config_size`: UTF-8 JSON text of the
   * slot's `config` section ("{}" when absent), borrowed for the call.
   * `host`: borrowed until destroy_fn (see vmhost_host_callbacks).
   * On success stores the instance in *out and returns VMHOST_OK; otherwise
   * fills *err, leaves *out NULL and returns err->code. */
  int32_t (*create_fn)(const uint8_t* config, size_t config_size, const vmhost_host_callbacks* host,
                       vmhost_instance** out, vmhost_error* err);

  /* Destroys an instance created by create_fn. `instance` may be NULL. */
  void (*destroy_fn)(vmhost_instance* instance);

  /* Calls `method` with a serialized request. `request`: a Cap'n Proto flat
   * array, borrowed for the call; the plugin must treat it as untrusted.
   * On VMHOST_OK, *response holds a plugin-allocated buffer the host hands
   * back to release_fn. Otherwise *response is zeroed and *err filled.
   * An unknown method returns VMHOST_ERR_UNIMPLEMENTED; a request that does
   * not decode returns VMHOST_ERR_INVALID_ARGUMENT. Never throws, never
   * aborts on bad input. */
  int32_t (*invoke_fn)(vmhost_instance* instance, uint32_t method, const uint8_t* request,
                       size_t request_size, vmhost_buffer* response, vmhost_error* err);

  /* Frees a buffer returned by invoke_fn. Safe on a zeroed buffer. */
  void (*release_fn)(vmhost_instance* instance, vmhost_buffer* buffer);
} vmhost_plugin_descriptor;

/* Version negotiation, as the Vulkan loader does with its drivers: the host
 * offers a range; the plugin always reports its own range and either picks a
 * version inside both (returning its descriptor with abi_version set) or
 * refuses (returning NULL). The entry point may be called more than once and
 * must not allocate per call. */
typedef struct vmhost_negotiation {
  uint32_t struct_size;    /* in: sizeof(vmhost_negotiation) as the host knows it */
  uint32_t host_abi_min;   /* in */
  uint32_t host_abi_max;   /* in */
  uint32_t plugin_abi_min; /* out: always set */
  uint32_t plugin_abi_max; /* out: always set */
  uint32_t abi_version;    /* out: the chosen version, 0 on refusal */
} vmhost_negotiation;

typedef const vmhost_plugin_descriptor* (*vmhost_plugin_entry_fn)(vmhost_negotiation* negotiation);

/* The entry symbol a plugin defines (extern "C", exported):
 *   VMHOST_PLUGIN_EXPORT const vmhost_plugin_descriptor *
 *   vmhost_plugin_entry(vmhost_negotiation *negotiation);
 */

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* VMHOST_PLUGIN_H */
