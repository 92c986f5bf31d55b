"""Case documents through the API: upload limits and types, listing, byte-identical
download, tenant isolation."""

from __future__ import annotations

import hashlib
from typing import Any

from tests.support import factories

PDF = b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n" + bytes(range(256)) * 40


async def _upload(
    tenant: Any,
    case_id: Any,
    name: str = "invoice.pdf",
    content: bytes = PDF,
    content_type: str = "application/pdf",
    **form: str,
) -> Any:
    return await tenant.client.post(
        f"/api/cases/{case_id}/documents",
        files={"file": (name, content, content_type)},
        data={"documentType": "invoice", **form},
    )


async def test_upload_list_and_download_bytes_identical(tenant: Any, container: Any) -> None:
    data = await factories.borrower_with_case(container, tenant.organization_id)
    r = await _upload(tenant, data["case_id"], description="Original invoice INV-2024-001")
    assert r.status_code == 201, r.text
    doc = r.json()
    assert doc["caseId"] == str(data["case_id"])
    assert doc["fileName"] == "invoice.pdf"
    assert doc["documentType"] == "invoice"
    assert doc["size"] == len(PDF)
    assert doc["sha256"] == hashlib.sha256(PDF).hexdigest()
    assert doc["uploadedBy"] == "Ada Admin"
    assert doc["uploadedAt"].endswith("Z") or "+00:00" in doc["uploadedAt"]

    listing = await tenant.client.get(f"/api/cases/{data['case_id']}/documents")
    assert listing.status_code == 200
    assert [d["documentId"] for d in listing.json()["documents"]] == [doc["documentId"]]

    download = await tenant.client.get(f"/api/documents/{doc['documentId']}/download")
    assert download.status_code == 200
    assert download.content == PDF
    assert download.headers["content-type"] == "application/pdf"
    assert download.headers["content-disposition"] == "attachment; filename*=UTF-8''invoice.pdf"
    assert download.headers["x-content-type-options"] == "nosniff"


async def test_generic_type_is_judged_by_name_and_content(tenant: Any, container: Any) -> None:
    data = await factories.borrower_with_case(container, tenant.organization_id)
    csv = b"date,amount\n2026-01-02,120.00\n"
    r = await _upload(tenant, data["case_id"], "payments.csv", csv, "application/octet-stream")
    assert r.status_code == 201, r.text
    assert r.json()["contentType"] == "text/csv"


async def test_over_25_mb_is_413(tenant: Any, container: Any) -> None:
    data = await factories.borrower_with_case(container, tenant.organization_id)
    big = PDF + b"\0" * (25 * 1024 * 1024)
    r = await _upload(tenant, data["case_id"], content=big)
    assert r.status_code == 413, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    listing = await tenant.client.get(f"/api/cases/{data['case_id']}/documents")
    assert listing.json()["documents"] == []


async def test_exactly_25_mb_is_accepted(tenant: Any, container: Any) -> None:
    data = await factories.borrower_with_case(container, tenant.organization_id)
    exact = PDF + b"\0" * (25 * 1024 * 1024 - len(PDF))
    r = await _upload(tenant, data["case_id"], content=exact)
    assert r.status_code == 201, r.text
    assert r.json()["size"] == 25 * 1024 * 1024


async def test_executables_are_415_by_type_by_name_and_by_content(
    tenant: Any, container: Any
) -> None:
    data = await factories.borrower_with_case(container, tenant.organization_id)
    case = data["case_id"]
    exe = b"MZ\x90\x00" + b"\0" * 200
    cases = [
        ("tool.exe", exe, "application/x-msdownload"),  # by type and name
        ("invoice.pdf", exe, "application/pdf"),  # a program claiming to be a PDF
        ("run.sh", b"#!/bin/sh\nrm -rf /\n", "text/plain"),  # a script as text
        ("invoice.pdf", b"just text, not a pdf", "application/pdf"),  # content mismatch
        ("archive.zip", b"PK\x03\x04rest", "application/zip"),  # not an accepted type
    ]
    for name, content, content_type in cases:
        r = await _upload(tenant, case, name, content, content_type)
        assert r.status_code == 415, (name, r.text)
        assert r.json()["errors"][0]["field"] == "file"
    assert (await tenant.client.get(f"/api/cases/{case}/documents")).json()["documents"] == []


async def test_bad_document_type_and_missing_file_are_422(tenant: Any, container: Any) -> None:
    data = await factories.borrower_with_case(container, tenant.organization_id)
    r = await _upload(tenant, data["case_id"], documentType="selfie")
    assert r.status_code == 422
    assert r.json()["errors"][0]["field"] == "documentType"
    r = await tenant.client.post(
        f"/api/cases/{data['case_id']}/documents", data={"documentType": "invoice"}
    )
    assert r.status_code == 422
    r = await _upload(tenant, data["case_id"], content=b"")
    assert r.status_code == 422


async def test_another_organization_gets_404(
    tenant: Any, other_tenant: Any, container: Any
) -> None:
    data = await factories.borrower_with_case(container, tenant.organization_id)
    doc = (await _upload(tenant, data["case_id"])).json()
    for path in (
        f"/api/documents/{doc['documentId']}",
        f"/api/documents/{doc['documentId']}/download",
        f"/api/cases/{data['case_id']}/documents",
    ):
        r = await other_tenant.client.get(path)
        assert r.status_code == 404, path
    r = await _upload(other_tenant, data["case_id"])
    assert r.status_code == 404
    assert (
        len(
            (await tenant.client.get(f"/api/cases/{data['case_id']}/documents")).json()["documents"]
        )
        == 1
    )
