"""The Associate App document a new sandbox tenant has (NewStore-as-OMS, every section set)."""

from __future__ import annotations

from typing import Any


def default_associate_app_config() -> dict[str, Any]:
    """A complete global Associate App document as a NewStore-as-OMS tenant might have it.

    It validates against the spec's strict `configSchema`, and deliberately touches most
    sections so that a client that rewrites the document (GET, change one field, PUT) is caught
    if it drops or reorders anything.
    """
    return {
        "capabilities": {
            "add_products_from_listing": True,
            "cash_management": True,
            "mixed_cart": False,
            "offline_mode": True,
            "offline_mode_catalog_backup": True,
            "offline_mode_prices_backup": False,
            "printer_management": {"air_print": True, "air_print_paper_width": 80},
            "reason_codes_enabled": True,
            "send_email_receipt_from_order_history": True,
            "ship_to_store_enabled": False,
            "survey_selling": {"alias": "sell-nps", "enabled": False, "label": "How was it?"},
            "customer_explicit_search": True,
        },
        "commerce_components": {
            "barcode_types": ["EAN13", "UPCA", "QR", "Code128"],
            "document_printer_types": {
                "sales_receipt": "documentPrinter",
                "refund_note": "documentPrinter",
                "shipping_label": "labelPrinter",
                "packing_slip": "documentPrinter",
                "default": "documentPrinter",
            },
            "gift_card_product_id": "giftcard-1",
            "gift_card_regexp": "^[0-9]{16}$",
        },
        "return_process_configuration": {
            "blind_return_enabled": False,
            "quality_inspection_options": [
                {"code": 1, "option": "Sellable"},
                {"code": 2, "option": "Damaged"},
            ],
            "return_reasons": [
                {
                    "code": 10,
                    "reason": "Too small",
                    "reasons": {"en": "Too small", "de": "Zu klein"},
                },
                {"code": 20, "reason": "Changed mind", "reasons": {"en": "Changed mind"}},
            ],
        },
        "ui_configurations": {
            "display_product_identifier": "product_id",
            "seconds_until_logout_on_inactivity": 900,
            "show_preorders_filter": False,
            "suggested_email_domains": ["gmail.com", "outlook.com"],
            "tax_exemption_enabled": False,
            "use_new_om_ui": False,
            "hide_selling": False,
        },
        "customizations": {
            "hang_tag_printing_enabled": False,
            "gift_receipt_printing_enabled": True,
            "cart_management": ["orderDiscount", "itemDiscount", "coupon"],
            "email_opt_in": {"privacy_policy_url": "https://example.com/privacy"},
            "disabled_contact_buttons": ["SMS"],
        },
        "release_toggles": {
            "drawer_navigation": True,
            "login_v2": True,
            "new_customer_profile": False,
            "push_notifications": True,
        },
        "external_integration": {
            "post_login_callback_urls": [
                {"identity_provider": "okta", "url": "https://example.com/callback"}
            ]
        },
        "last_published_release": "1.62.0",
    }
