#include "vfsshim.h"
int vr_placeholder(void) { return 0; }
