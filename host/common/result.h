// Result<T> and Error, the host's vocabulary for every call that can fail,
// are the plugin loader's types (sdk/loader): one definition for the loader,
// the kit and the host.
#pragma once

#include <vmhost/loader/result.h>
