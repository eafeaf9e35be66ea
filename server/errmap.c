/* errmap.c - the engine -> API error mapping (see errmap.h). */
#include "server/errmap.h"

#include <errno.h>

#include "engine/core/error.h"

api_err srv_errmap_engine(int eng_code)
{
    switch (eng_code) {
    case ENG_OK: return API_OK;
    case ENG_ECANCELED: return API_ERR_CANCELED;
    default: return API_ERR_ENGINE; /* the message, not the status, tells which */
    }
}

int srv_errmap_errno(int neg_errno)
{
    if (neg_errno == 0)
        return ENG_OK;
    return neg_errno == -ENOMEM ? ENG_ENOMEM : ENG_EIO;
}
