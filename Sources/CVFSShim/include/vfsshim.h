#ifndef VFSSHIM_H
#define VFSSHIM_H
/* placeholder: being written */
int vr_placeholder(void);
#endif
