/*
 * errmap.h - where an engine error code (ENG_E*, engine/core/error.h) becomes the server's: the
 * API error a job fails with, which gives the HTTP status and the error body (api/errors.c).
 *
 * This is the one place where the server turns an engine code into a reply; elsewhere it carries
 * the code as it came (srv_unit.status, srv_batch.status) with its message, and only tells
 * ENG_ECANCELED (which the workers set themselves for dropped units) from a failure. The
 * other way, a failure of the server's own code after the engine (image encoding, which returns
 * -errno) joins those engine codes here too, so that a unit's status is always one.
 */
#ifndef TTTD_SERVER_ERRMAP_H
#define TTTD_SERVER_ERRMAP_H

#include "api/errors.h"

/* API_OK for 0, API_ERR_CANCELED for ENG_ECANCELED, API_ERR_ENGINE for any other code. */
api_err srv_errmap_engine(int eng_code);

/* The engine code a -errno failure is carried as: 0 for 0, ENG_ENOMEM for -ENOMEM, else ENG_EIO. */
int srv_errmap_errno(int neg_errno);

#endif
