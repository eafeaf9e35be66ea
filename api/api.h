/*
 * api.h - the whole api/ layer in one include: the error table (errors.h), request parsing and
 * content negotiation (request.h), answer builders (response.h), base64 (base64.h) and the
 * growable buffer they are written into (buf.h), image metadata text (metadata.h).
 */
#ifndef TTTD_API_API_H
#define TTTD_API_API_H

#include "api/a1111.h"
#include "api/base64.h"
#include "api/buf.h"
#include "api/errors.h"
#include "api/metadata.h"
#include "api/request.h"
#include "api/response.h"

#endif
