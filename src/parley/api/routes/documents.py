"""Case documents: upload (multipart), list, download (seed: Document Management)."""

from __future__ import annotations

import uuid
from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, File, Form, Response, UploadFile, status

from parley.api.deps import PrincipalDep, SessionDep
from parley.api.schemas.documents import DocumentList, DocumentOut
from parley.services import documents as svc
from parley.storage.models import Document

router = APIRouter(tags=["documents"])


def _out(d: Document) -> DocumentOut:
    return DocumentOut(
        document_id=d.id,
        case_id=d.case_id,
        file_name=d.file_name,
        document_type=d.document_type,
        content_type=d.content_type,
        size=d.size,
        sha256=d.sha256,
        description=d.description,
        message_id=d.message_id,
        uploaded_at=d.created_at,
        uploaded_by=d.uploaded_by_name,
    )


@router.post(
    "/api/cases/{case_id}/documents",
    response_model=DocumentOut,
    status_code=status.HTTP_201_CREATED,
)
async def upload_document(
    case_id: uuid.UUID,
    session: SessionDep,
    principal: PrincipalDep,
    file: Annotated[UploadFile, File(description="the file, at most 25 MB")],
    documentType: Annotated[str, Form(description=", ".join(svc.DOCUMENT_TYPES))],
    description: Annotated[str | None, Form(max_length=2000)] = None,
) -> DocumentOut:
    # Read at most one byte over the limit: enough to know it is too large.
    content = await file.read(svc.MAX_DOCUMENT_BYTES + 1)
    document = await svc.upload(
        session,
        principal.organization_id,
        case_id,
        svc.NewFile(file.filename or "", file.content_type, content),
        documentType,
        description,
        user_id=principal.user_id,
        user_name=principal.name,
    )
    return _out(document)


@router.get("/api/cases/{case_id}/documents", response_model=DocumentList)
async def list_documents(
    case_id: uuid.UUID, session: SessionDep, principal: PrincipalDep
) -> DocumentList:
    rows = await svc.for_case(session, principal.organization_id, case_id)
    return DocumentList(documents=[_out(d) for d in rows])


@router.get("/api/documents/{document_id}", response_model=DocumentOut)
async def get_document(
    document_id: uuid.UUID, session: SessionDep, principal: PrincipalDep
) -> DocumentOut:
    return _out(await svc.get(session, principal.organization_id, document_id))


@router.get(
    "/api/documents/{document_id}/download",
    response_class=Response,
    responses={200: {"content": {"application/octet-stream": {}}}},
)
async def download_document(
    document_id: uuid.UUID, session: SessionDep, principal: PrincipalDep
) -> Response:
    document = await svc.get(session, principal.organization_id, document_id)
    data = await svc.content(session, document)
    return Response(
        content=data,
        media_type=document.content_type,
        headers={
            # Always a download, never rendered in our origin (a borrower sent it).
            "Content-Disposition": f"attachment; filename*=UTF-8''{quote(document.file_name)}",
            "X-Content-Type-Options": "nosniff",
            "Content-Security-Policy": "default-src 'none'; sandbox",
        },
    )
